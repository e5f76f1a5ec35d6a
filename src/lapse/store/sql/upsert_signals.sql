-- Move a signal's last_seen forward, only when the report is at least the resolution later
-- (:threshold = reported time - resolution), so repeated activity costs no write.
INSERT INTO signals (account_id, name, last_seen)
VALUES (:account_id, :name, :last_seen)
ON CONFLICT (account_id, name) DO UPDATE
   SET last_seen = excluded.last_seen
 WHERE signals.last_seen <= :threshold
   AND signals.last_seen < excluded.last_seen

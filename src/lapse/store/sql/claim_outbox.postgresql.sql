-- Claim up to :limit pending outbox rows whose next attempt is due, oldest first.
UPDATE outbox
   SET claimed_by = :worker, claim_expires_at = :expires
 WHERE id IN (
        SELECT id
          FROM outbox
         WHERE status = 'pending'
           AND next_attempt_at <= :now
           AND (claim_expires_at IS NULL OR claim_expires_at < :now)
         ORDER BY next_attempt_at, id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED)
RETURNING id

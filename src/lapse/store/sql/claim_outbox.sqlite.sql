-- Leases (claim_expires_at) run on the wall clock (:wall), the due test on the lifecycle clock
-- (:now): a worker that dies has its claims taken over even under a controlled clock.
-- Claim up to :limit pending outbox rows whose next attempt is due, oldest first: all of them
-- (:rows 'all'), or the deliveries ('deliveries') or the deletions and purges ('data') alone.
UPDATE outbox
   SET claimed_by = :worker, claim_expires_at = :expires
 WHERE id IN (
        SELECT id
          FROM outbox
         WHERE status = 'pending'
           AND next_attempt_at <= :now
           AND (claim_expires_at IS NULL OR claim_expires_at < :wall)
           AND (:rows = 'all' OR (channel = 'data') = (:rows = 'data'))
         ORDER BY next_attempt_at, id
         LIMIT :limit)
RETURNING id

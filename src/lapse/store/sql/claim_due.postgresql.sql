-- Leases (claim_expires_at) run on the wall clock (:wall), the due test on the lifecycle clock
-- (:now): a worker that dies has its claims taken over even under a controlled clock.
-- Claim up to :limit due accounts for :worker in one statement. SKIP LOCKED lets concurrent
-- workers pass over rows another worker is claiming right now instead of waiting for them.
UPDATE accounts
   SET claimed_by = :worker, claim_expires_at = :expires
 WHERE id IN (
        SELECT id
          FROM accounts
         WHERE next_due_at <= :now
           AND (claim_expires_at IS NULL OR claim_expires_at < :wall)
         ORDER BY next_due_at
         LIMIT :limit
           FOR UPDATE SKIP LOCKED)
RETURNING id, next_due_at

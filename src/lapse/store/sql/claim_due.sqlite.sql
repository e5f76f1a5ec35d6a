-- Leases (claim_expires_at) run on the wall clock (:wall), the due test on the lifecycle clock
-- (:now): a worker that dies has its claims taken over even under a controlled clock.
-- Claim up to :limit due accounts for :worker in one statement. SQLite has a single writer
-- (the store begins every write with BEGIN IMMEDIATE), so no row locks are needed.
UPDATE accounts
   SET claimed_by = :worker, claim_expires_at = :expires
 WHERE id IN (
        SELECT id
          FROM accounts
         WHERE next_due_at <= :now
           AND (claim_expires_at IS NULL OR claim_expires_at < :wall)
         ORDER BY next_due_at
         LIMIT :limit)
RETURNING id, next_due_at

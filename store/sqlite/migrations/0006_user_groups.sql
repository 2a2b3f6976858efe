-- user_groups holds the access-policy groups of a user (`passgate user
-- set-groups`), sorted and without duplicates, as a JSON array. The checks
-- read it with the token on a cache miss (LookupToken's join). Named
-- user_groups because GROUPS is an SQL keyword.
ALTER TABLE users ADD COLUMN user_groups TEXT NOT NULL DEFAULT '[]';

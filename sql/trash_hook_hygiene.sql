-- trash_hook_hygiene: a DROP TABLE that guard turns into a move still
-- reaches the rest of the utility hook chain and the event triggers, once,
-- and says what PostgreSQL says; guard's own steps are not seen or heard.
-- guard.undrop() matches names literally; long names come back whole.
SELECT fresh_ids();
CREATE FUNCTION show_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE '% %', tg_event, tg_tag;
END
$$;
CREATE EVENT TRIGGER regress_guard_start ON ddl_command_start EXECUTE FUNCTION show_ddl();
CREATE EVENT TRIGGER regress_guard_end ON ddl_command_end EXECUTE FUNCTION show_ddl();

CREATE TABLE base (id int PRIMARY KEY, v int);
CREATE TABLE plain (id int PRIMARY KEY);
CREATE VIEW both_v AS SELECT b.id FROM base b JOIN plain p USING (id);
CREATE VIEW base_v AS SELECT * FROM base;
SELECT guard.protect('base');

-- the statement is seen once, as a DROP TABLE; none of guard's steps is
DROP TABLE base CASCADE;
SELECT kind FROM guard.undrop('base');
-- PostgreSQL's own notice and error, for the whole statement
SELECT expect_error($$DROP TABLE base, plain$$);
DROP TABLE IF EXISTS no_such_table, base, plain CASCADE;
DROP EVENT TRIGGER regress_guard_start;
DROP EVENT TRIGGER regress_guard_end;
DROP FUNCTION show_ddl();

-- names are matched literally: "_" and "%" are no wildcards
CREATE TABLE abc (id int PRIMARY KEY);
CREATE TABLE "a_c" (id int PRIMARY KEY);
SELECT guard.protect('abc');
SELECT guard.protect('a_c');
DROP TABLE "a_c";
DROP TABLE abc;
SELECT relation FROM guard.undrop('a_c');
SELECT expect_error($$SELECT * FROM guard.undrop('a%')$$);
SELECT relation FROM guard.undrop('public.abc');

-- a name as long as a name can be comes back whole, with its index
CREATE TABLE sixty_three_characters_long_name_for_a_table_that_is_protected (id int PRIMARY KEY);
SELECT guard.protect('sixty_three_characters_long_name_for_a_table_that_is_protected');
DROP TABLE sixty_three_characters_long_name_for_a_table_that_is_protected;
SELECT kind FROM guard.undrop('sixty_three_characters_long_name_for_a_table_that_is_protected');
SELECT relname FROM pg_class WHERE relname LIKE 'sixty\_three%' ORDER BY 1;

DROP TABLE abc, a_c, sixty_three_characters_long_name_for_a_table_that_is_protected;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');

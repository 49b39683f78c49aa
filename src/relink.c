/*-------------------------------------------------------------------------
 *
 * relink.c
 *	  Make again, at the undo of a DROP TABLE, the links of the table to the
 *	  live tables that link.c saved and cut at the DROP.
 *
 * Each link is a directive (a JSON object) among the "recreate_N" entries
 * of the DROP TABLE change's detail, naming tables by OID, so that the
 * undo names them as they are then.  A foreign key comes back NOT VALID and
 * is then validated; if rows written since break it, it stays NOT VALID
 * with a WARNING rather than fail the undo.  A link to a table still in
 * the trash is handed over to that table's DROP TABLE change; a link to a
 * table that no longer exists is dropped.
 *
 * Calls link.c and spi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_publication.h"
#include "fmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "guard.h"

/* the search_path guard's own statements run with */
#define LINK_PATH	"pg_catalog, pg_temp"

/*
 * Field "name" of a directive (a JSON object as text), or NULL.
 */
static char *
directive_field(const char *directive, const char *name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = DirectFunctionCall1(jsonb_in, CStringGetDatum(directive));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(name);
	fcinfo->args[1].isnull = false;
	result = jsonb_object_field_text(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	return TextDatumGetCString(result);
}

/* the same for an OID field (InvalidOid if absent) */
static Oid
directive_oid(const char *directive, const char *name)
{
	char	   *value = directive_field(directive, name);

	return value ? atooid(value) : InvalidOid;
}

/*
 * Run one statement of guard's own in a subtransaction; returns false
 * (with the error's message in *message) if it failed.
 */
static bool
try_internal_ddl(const char *sql, char **message)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		guard_run_internal_ddl(InvalidOid, LINK_PATH, list_make1((char *) sql));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = guard_subxact_abort(oldcxt, oldowner);
		*message = edata->message;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* the qualified name of relation "relid" */
static char *
qualified(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * Make a foreign key again: NOT VALID, then validated if it was; rows
 * written since that break it leave it NOT VALID, with a WARNING.
 */
static void
restore_fk(const char *directive, Oid rel, Oid ref)
{
	char	   *name = directive_field(directive, "name");
	char	   *tail = directive_field(directive, "tail");
	bool		validated = strcmp(directive_field(directive, "validated"), "true") == 0;
	bool		partitioned = get_rel_relkind(rel) == RELKIND_PARTITIONED_TABLE;
	char	   *message;

	if (OidIsValid(get_relation_constraint_oid(rel, name, true)))
		return;					/* made again already (ATTACH PARTITION) */
	guard_run_internal_ddl(InvalidOid, LINK_PATH,
						   list_make1(psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s REFERENCES %s%s%s",
											   qualified(rel), quote_identifier(name),
											   directive_field(directive, "head"),
											   qualified(ref), tail,
											   validated && !partitioned ? " NOT VALID" : "")));
	if (!validated || partitioned)
		return;
	if (!try_internal_ddl(psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s",
								   qualified(rel), quote_identifier(name)),
						  &message))
		ereport(WARNING,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("foreign key \"%s\" of table \"%s\" is back NOT VALID", name, get_rel_name(rel)),
				 errdetail("Rows written while the table was dropped break it: %s", message),
				 errhint("Fix the rows, then run ALTER TABLE ... VALIDATE CONSTRAINT.")));
}

/*
 * Run the statements that make a view or materialized view again, once the
 * tables it reads ("needs": OIDs) are all back: while one is still in the
 * trash the directive is handed over to it; if one no longer exists, the
 * view cannot be made again, and a WARNING says so.
 */
static void
restore_sql(const char *directive)
{
	char	   *needs = directive_field(directive, "needs");
	char	   *sql = directive_field(directive, "sql");
	char	   *tok;
	char	   *save = NULL;

	for (tok = strtok_r(needs, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
	{
		Oid			relid = atooid(tok);

		if (get_rel_name(relid) == NULL)
		{
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("a view on the restored table is not made again: a table it reads no longer exists"),
					 errdetail("The view was: %s", sql)));
			return;
		}
		if (guard_in_trash(relid))
		{
			guard_link_append(guard_trash_root(relid), directive);
			return;
		}
	}
	guard_run_internal_ddl(InvalidOid, LINK_PATH, list_make1(sql));
}

/*
 * Make a link again (a directive of guard_links_save()), when the undo of
 * a DROP TABLE has brought the tree back.  A link to a table still in the
 * trash is handed over to that table's DROP TABLE change; a link to a
 * table that no longer exists is dropped.
 */
void
guard_link_restore(const char *directive)
{
	char	   *link = directive_field(directive, "link");
	Oid			rel = directive_oid(directive, "rel");
	Oid			other = InvalidOid;

	if (link != NULL && strcmp(link, "sql") == 0)
	{
		restore_sql(directive);
		return;
	}
	if (link == NULL || get_rel_name(rel) == NULL)
		return;
	if (strcmp(link, "fk") == 0)
		other = directive_oid(directive, "ref");
	else if (strcmp(link, "partition") == 0 || strcmp(link, "inherit") == 0)
		other = directive_oid(directive, "parent");
	if (OidIsValid(other))
	{
		if (get_rel_name(other) == NULL)
			return;
		if (guard_in_trash(other))
		{
			guard_link_append(guard_trash_root(other), directive);
			return;
		}
	}
	if (guard_in_trash(rel))
	{
		/* the referencing side of a foreign key is the one still away */
		guard_link_append(guard_trash_root(rel), directive);
		return;
	}

	if (strcmp(link, "fk") == 0)
		restore_fk(directive, rel, other);
	else if (strcmp(link, "partition") == 0)
		guard_run_internal_ddl(InvalidOid, LINK_PATH,
							   list_make1(psprintf("ALTER TABLE %s ATTACH PARTITION %s %s",
												   qualified(other), qualified(rel),
												   directive_field(directive, "bound"))));
	else if (strcmp(link, "inherit") == 0)
		guard_run_internal_ddl(InvalidOid, LINK_PATH,
							   list_make1(psprintf("ALTER TABLE %s INHERIT %s",
												   qualified(rel), qualified(other))));
	else if (strcmp(link, "publication") == 0)
	{
		char	   *pub = directive_field(directive, "publication");
		char	   *columns = directive_field(directive, "columns");
		char	   *where = directive_field(directive, "where");

		if (!OidIsValid(get_publication_oid(pub, true)))
			return;
		guard_run_internal_ddl(InvalidOid, LINK_PATH,
							   list_make1(psprintf("ALTER PUBLICATION %s ADD TABLE %s%s%s%s%s%s",
												   quote_identifier(pub),
												   get_rel_relkind(rel) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
												   qualified(rel),
												   columns ? " (" : "", columns ? columns : "",
												   columns ? ")" : "",
												   where ? psprintf(" WHERE (%s)", where) : "")));
	}
	else if (strcmp(link, "of") == 0)
	{
		Oid			type = directive_oid(directive, "type");
		char	   *message;

		if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(type)))
			return;
		if (!try_internal_ddl(psprintf("ALTER TABLE %s OF %s", qualified(rel),
									   format_type_be_qualified(type)),
							  &message))
			ereport(WARNING,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("table \"%s\" is back, but not as a table of type %s",
							get_rel_name(rel), format_type_be(type)),
					 errdetail("%s", message)));
	}
	else if (strcmp(link, "owner") == 0)
	{
		char	   *role = directive_field(directive, "owner");

		if (OidIsValid(get_role_oid(role, true)))
			guard_run_internal_ddl(InvalidOid, LINK_PATH,
								   list_make1(psprintf("ALTER TABLE %s OWNER TO %s",
													   qualified(rel), quote_identifier(role))));
	}
}

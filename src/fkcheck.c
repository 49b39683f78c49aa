/*-------------------------------------------------------------------------
 *
 * fkcheck.c
 *	  The foreign keys a restore must leave holding.
 *
 * Row undo writes with session_replication_role = replica (undo.c), so the
 * foreign-key triggers do not fire while a restore writes: a change set
 * made by ON DELETE CASCADE or ON UPDATE CASCADE is undone child first,
 * which the triggers would refuse, and a cascade must not fire again on the
 * values written back.  Instead, once every change is undone, the restore
 * checks the foreign keys that involve the rows it wrote, in both
 * directions, as RI_Initial_Check does for a whole table but for the
 * written key values only:
 *
 *	- where a restored table holds a foreign key, the values its written
 *	  rows hold afterwards must be present in the referenced table, unless
 *	  no row holds them any more;
 *	- where a restored table is referenced, the values its rows held before
 *	  being written must not be referenced any more, unless a row of the
 *	  table holds them again.
 *
 * Row undo hands over each batch of rows just before and just after writing
 * it (guard_fk_note_write); their values are collected per constraint into
 * tuplestores, and guard_fk_check() checks them per constraint in two
 * queries (the values absent from the referenced table, then whether a
 * referencing row holds one of those), raising 23503 on the first
 * violation.  Tables that no foreign key involves cost one scan of
 * pg_constraint per restore.
 *
 * Calls spi.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/partition.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "guard.h"

#define FK_ENR_NAME		"guard_fk_values"
#define FK_MISSING_NAME	"guard_fk_missing"

/* one foreign key that involves a restored table, seen from that table */
typedef struct FkSide
{
	Oid			conoid;
	char	   *conname;
	bool		referencing;	/* the restored table holds the foreign key */
	char		matchtype;
	Oid			fkrelid;		/* the constraint's tables (the restored one,
								 * or a partition or ancestor of it) */
	Oid			pkrelid;
	int			nkeys;
	char	   *cols[INDEX_MAX_KEYS];	/* fk columns if referencing, else pk */
	char	   *fkcols[INDEX_MAX_KEYS];
	char	   *pkcols[INDEX_MAX_KEYS];
	Oid			pfeqop[INDEX_MAX_KEYS]; /* pk = fk */
	Oid			ppeqop[INDEX_MAX_KEYS]; /* pk = pk */
	Oid			ffeqop[INDEX_MAX_KEYS]; /* fk = fk */
	Oid			types[INDEX_MAX_KEYS];	/* of cols, in the restored table */
	TupleDesc	desc;			/* of the collected values */
	Tuplestorestate *values;	/* the values to check, NULL until some */
} FkSide;

/* the foreign keys of one restored table */
typedef struct FkTable
{
	Oid			relid;
	List	   *sides;			/* FkSide */
	bool		stale;			/* a schema change was undone since: look for
								 * new foreign keys again */
} FkTable;

/* the restore running, or NULL */
static MemoryContext fk_cxt = NULL;
static List *fk_tables = NIL;

/*
 * Reset callback of fk_cxt: when the transaction's memory goes, so does
 * the tracking.
 */
static void
fk_cxt_gone(void *arg)
{
	fk_cxt = NULL;
	fk_tables = NIL;
}

/*
 * Start tracking the foreign keys of a restore; whatever an earlier restore
 * that failed left behind is forgotten.
 */
void
guard_fk_begin(void)
{
	MemoryContextCallback *cb;

	guard_fk_forget();
	fk_cxt = AllocSetContextCreate(TopTransactionContext, "guard restore foreign keys",
								   ALLOCSET_DEFAULT_SIZES);
	cb = MemoryContextAlloc(fk_cxt, sizeof(MemoryContextCallback));
	cb->func = fk_cxt_gone;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(fk_cxt, cb);
}

/*
 * Forget the tracked values without checking them (the restore failed).
 * Their tuplestores' temporary files, if any, belong to the resource owner
 * of the (sub)transaction, which the abort releases.
 */
void
guard_fk_forget(void)
{
	if (fk_cxt != NULL)
		MemoryContextDelete(fk_cxt);	/* fk_cxt_gone() clears the state */
	Assert(fk_cxt == NULL);
}

/*
 * Close the tuplestores of the tracked values (their temporary files
 * too), then forget them: the restore is done with them.
 */
static void
fk_end(void)
{
	ListCell   *lt;

	foreach(lt, fk_tables)
	{
		ListCell   *ls;

		foreach(ls, ((FkTable *) lfirst(lt))->sides)
		{
			FkSide	   *s = lfirst(ls);

			if (s->values != NULL)
				tuplestore_end(s->values);
			s->values = NULL;
		}
	}
	guard_fk_forget();
}

/*
 * The relations whose foreign keys may concern rows written into "relid":
 * itself, its partitions and its partition ancestors.
 */
static List *
related_relids(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, NoLock, NULL);

	if (get_rel_relispartition(relid))
		rels = list_concat(rels, get_partition_ancestors(relid));
	return rels;
}

/*
 * Describe one side of foreign key "tuple" for the restored table "rel";
 * NULL if a column is missing from the restored table.
 */
static FkSide *
side_from_constraint(Relation rel, HeapTuple tuple, bool referencing)
{
	Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tuple);
	FkSide	   *s = palloc0(sizeof(FkSide));
	AttrNumber	conkey[INDEX_MAX_KEYS];
	AttrNumber	confkey[INDEX_MAX_KEYS];

	s->conoid = con->oid;
	s->conname = pstrdup(NameStr(con->conname));
	s->referencing = referencing;
	s->matchtype = con->confmatchtype;
	s->fkrelid = con->conrelid;
	s->pkrelid = con->confrelid;
	DeconstructFkConstraintRow(tuple, &s->nkeys, conkey, confkey, s->pfeqop,
							   s->ppeqop, s->ffeqop, NULL, NULL);
	s->desc = CreateTemplateTupleDesc(s->nkeys);
	for (int i = 0; i < s->nkeys; i++)
	{
		AttrNumber	attnum;
		Form_pg_attribute att;
		char		name[NAMEDATALEN];

		s->fkcols[i] = get_attname(s->fkrelid, conkey[i], false);
		s->pkcols[i] = get_attname(s->pkrelid, confkey[i], false);
		s->cols[i] = referencing ? s->fkcols[i] : s->pkcols[i];
		attnum = get_attnum(RelationGetRelid(rel), s->cols[i]);
		if (attnum <= 0)
			return NULL;
		att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
		s->types[i] = att->atttypid;
		snprintf(name, sizeof(name), "c_%d", i + 1);
		TupleDescInitEntry(s->desc, i + 1, name, att->atttypid, att->atttypmod, 0);
		TupleDescInitEntryCollation(s->desc, i + 1, att->attcollation);
	}
	return s;
}

/*
 * Does table "t" already have side "referencing" of constraint "conoid"?
 */
static bool
has_side(FkTable *t, Oid conoid, bool referencing)
{
	ListCell   *lc;

	foreach(lc, t->sides)
	{
		FkSide	   *s = lfirst(lc);

		if (s->conoid == conoid && s->referencing == referencing)
			return true;
	}
	return false;
}

/*
 * Add to "t" the foreign keys involving restored table "rel" that it does
 * not have yet.  Constraints cloned onto partitions (conparentid set) are
 * represented by the one they were cloned from.
 */
static void
find_sides(FkTable *t, Relation rel)
{
	List	   *related = related_relids(t->relid);
	Relation	conrel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;

	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_contype, BTEqualStrategyNumber,
				F_CHAREQ, CharGetDatum(CONSTRAINT_FOREIGN));
	scan = systable_beginscan(conrel, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tuple);
		FkSide	   *s;

		if (OidIsValid(con->conparentid))
			continue;
		for (int referencing = 0; referencing <= 1; referencing++)
		{
			if (list_member_oid(related, referencing ? con->conrelid : con->confrelid) &&
				!has_side(t, con->oid, referencing) &&
				(s = side_from_constraint(rel, tuple, referencing)) != NULL)
				t->sides = lappend(t->sides, s);
		}
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	t->stale = false;
}

/*
 * The foreign keys involving restored table "rel", found on first use, and
 * again after a schema change was undone (DROP TABLE's undo recreates
 * foreign keys); the values collected so far are kept.
 */
static FkTable *
fk_table(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	FkTable    *t = NULL;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(fk_cxt);

	foreach(lc, fk_tables)
	{
		if (((FkTable *) lfirst(lc))->relid == relid)
			t = lfirst(lc);
	}
	if (t == NULL)
	{
		t = palloc0(sizeof(FkTable));
		t->relid = relid;
		t->stale = true;
		fk_tables = lappend(fk_tables, t);
	}
	if (t->stale)
		find_sides(t, rel);
	MemoryContextSwitchTo(old);
	return t;
}

/*
 * A schema change was undone: the foreign keys of the tables may have
 * changed (a column dropped with its constraint, constraints recreated).
 */
void
guard_fk_schema_changed(void)
{
	ListCell   *lc;

	if (fk_cxt == NULL)
		return;
	foreach(lc, fk_tables)
		((FkTable *) lfirst(lc))->stale = true;
}

/*
 * Does the side's constraint still exist (a schema change undone in the
 * same restore may have dropped it with its column)?
 */
static bool
side_exists(const FkSide *s)
{
	return SearchSysCacheExists1(CONSTROID, ObjectIdGetDatum(s->conoid));
}

/*
 * Append "a = b" for values of type "type", with the type's default
 * equality (what identifies a row's key in the restore's rows).
 */
static void
append_key_equal(StringInfo buf, const char *a, const char *b, Oid type)
{
	TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_EQ_OPR);

	if (!OidIsValid(tc->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify an equality operator for type %s",
						format_type_be(type))));
	generate_operator_clause(buf, a, type, tc->eq_opr, b, type);
}

/*
 * The index of column "name" among the written columns, or -1.
 */
static int
write_column(const GuardFkWrite *w, const char *name)
{
	for (int c = 0; c < w->ncols; c++)
	{
		if (strcmp(w->colnames[c], name) == 0)
			return c;
	}
	return -1;
}

/*
 * The condition on a restore row "r" of op 'U' that it may change the
 * side's columns: one of them is written back (any, if one is generated).
 */
static char *
update_touches(const GuardFkWrite *w, const FkSide *s)
{
	TupleDesc	desc = RelationGetDescr(w->rel);
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < s->nkeys; i++)
	{
		AttrNumber	attnum = get_attnum(RelationGetRelid(w->rel), s->cols[i]);
		int			c = write_column(w, s->cols[i]);

		if (attnum <= 0)
			continue;
		/* a generated column changes with the columns it is made of */
		if (TupleDescAttr(desc, attnum - 1)->attgenerated)
			return "true";
		if (c >= 0)
			appendStringInfo(&buf, "%spg_catalog.get_bit(r.m, %d) = 1",
							 buf.len ? " OR " : "", c);
	}
	return buf.len ? buf.data : "false";
}

/*
 * Collect into the side's tuplestore the values of its columns in the rows
 * of the restored table that the restore's rows "w" are about to leave
 * (before) or have written (after).  Runs in the caller's SPI connection,
 * where w->enrname is registered.
 */
static void
collect(FkSide *s, const GuardFkWrite *w, bool after)
{
	Relation	rel = w->rel;
	StringInfoData sql;
	SPIExecuteOptions options;
	DestReceiver *dest;
	MemoryContext old;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < s->nkeys; i++)
		appendStringInfo(&sql, "%st.%s", i ? ", " : "", quote_identifier(s->cols[i]));
	/*
	 * Rows leaving (before): undone INSERTs ('I'), rows a move ('K') deletes
	 * at their key, rows an undone DELETE replaces ('D' with m not null).
	 * Rows written (after): undone DELETEs ('D') and moves ('K').  Both: an
	 * UPDATE ('U') that writes one of the side's columns.  See undo.h.
	 */
	appendStringInfo(&sql, " FROM %s t JOIN %s r ON (%s OR (r.op = 'U' AND (%s)))",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 w->enrname,
					 after ? "r.op IN ('D', 'K')" :
					 "(r.op IN ('I', 'K') OR (r.op = 'D' AND r.m IS NOT NULL))",
					 update_touches(w, s));
	for (int k = 0; k < w->nkeys; k++)
	{
		char	   *tcol = psprintf("t.%s", quote_identifier(w->keynames[k]));
		int			c = write_column(w, w->keynames[k]);
		char	   *rcol;

		/* where a restored row's key is after the write */
		if (after && c >= 0)
			rcol = psprintf("(CASE WHEN r.op = 'K' OR (r.op = 'U' AND pg_catalog.get_bit(r.m, %d) = 1)"
							" THEN r.v_%d ELSE r.k_%d END)", c, c, k + 1);
		else
			rcol = psprintf("r.k_%d", k + 1);
		appendStringInfoString(&sql, " AND ");
		append_key_equal(&sql, tcol, rcol, w->keytypes[k]);
	}

	old = MemoryContextSwitchTo(fk_cxt);
	if (s->values == NULL)
		s->values = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);
	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, s->values, fk_cxt, true, NULL, NULL);
	memset(&options, 0, sizeof(options));
	options.dest = dest;
	if (SPI_execute_extended(sql.data, &options) != SPI_OK_SELECT)
		elog(ERROR, "guard: could not collect the foreign key values of \"%s\"",
			 RelationGetRelationName(rel));
	dest->rDestroy(dest);
}

/*
 * Before the restore's rows "w" are written (after = false): keep the
 * values of referenced columns that the rows to update or delete hold.
 * After they were written (after = true): keep the values of foreign key
 * columns that the rows updated or inserted hold.
 */
void
guard_fk_note_write(const GuardFkWrite *w, bool after)
{
	ListCell   *lc;

	if (fk_cxt == NULL)
		return;
	foreach(lc, fk_table(w->rel)->sides)
	{
		FkSide	   *s = lfirst(lc);

		if (s->referencing == after && side_exists(s))
			collect(s, w, after);
	}
}

/*
 * The qualified name of a relation, for SQL, and the ONLY that a lookup in
 * it needs: a foreign key is to the table itself, or to a partitioned
 * table's whole tree (as RI_Initial_Check).
 */
static char *
rel_for_lookup(Oid relid)
{
	return psprintf("%s%s", get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											   get_rel_name(relid)));
}

/*
 * Append "left op right" and the collation of the referenced column when
 * the two sides' collations differ (as RI_Initial_Check).
 */
static void
append_fk_qual(StringInfo buf, const FkSide *s, int i, bool first,
			   const char *left, Oid lefttype, Oid op, const char *right,
			   Oid righttype)
{
	Oid			type;
	int32		typmod;
	Oid			pkcoll;
	Oid			fkcoll;

	get_atttypetypmodcoll(s->pkrelid, get_attnum(s->pkrelid, s->pkcols[i]),
						  &type, &typmod, &pkcoll);
	get_atttypetypmodcoll(s->fkrelid, get_attnum(s->fkrelid, s->fkcols[i]),
						  &type, &typmod, &fkcoll);

	appendStringInfoString(buf, first ? "" : " AND ");
	generate_operator_clause(buf, left, lefttype, op, right, righttype);
	if (pkcoll != fkcoll && OidIsValid(pkcoll))
		appendStringInfo(buf, " COLLATE %s", generate_collation_name(pkcoll));
}

/*
 * The types of the side's referenced and referencing columns.
 */
static void
side_types(const FkSide *s, Oid *pktypes, Oid *fktypes)
{
	for (int i = 0; i < s->nkeys; i++)
	{
		pktypes[i] = get_atttype(s->pkrelid, get_attnum(s->pkrelid, s->pkcols[i]));
		fktypes[i] = get_atttype(s->fkrelid, get_attnum(s->fkrelid, s->fkcols[i]));
	}
}

/*
 * The first step of the check of side "s": the collected values absent
 * from the referenced table (found through its unique index).  For a
 * referencing side the referenced rows found are locked FOR KEY SHARE, as
 * the foreign key's own check does, so that they stay until commit.
 */
static char *
missing_query(const FkSide *s)
{
	StringInfoData sql;
	Oid			pktypes[INDEX_MAX_KEYS];
	Oid			fktypes[INDEX_MAX_KEYS];

	side_types(s, pktypes, fktypes);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT v.* FROM " FK_ENR_NAME " v WHERE (");
	for (int i = 0; i < s->nkeys; i++)
		appendStringInfo(&sql, "%sv.c_%d IS NOT NULL",
						 i == 0 ? "" : (s->referencing && s->matchtype == FKCONSTR_MATCH_FULL) ?
						 " OR " : " AND ", i + 1);
	appendStringInfo(&sql, ") AND NOT EXISTS (SELECT 1 FROM %s p WHERE ",
					 rel_for_lookup(s->pkrelid));
	for (int i = 0; i < s->nkeys; i++)
		append_fk_qual(&sql, s, i, i == 0, psprintf("p.%s", quote_identifier(s->pkcols[i])),
					   pktypes[i], s->referencing ? s->pfeqop[i] : s->ppeqop[i],
					   psprintf("v.c_%d", i + 1), s->types[i]);
	appendStringInfo(&sql, "%s)", s->referencing ? " FOR KEY SHARE OF p" : "");
	return sql.data;
}

/*
 * The second step: of the values absent from the referenced table, one
 * that a row of the referencing table holds.  (MATCH FULL: with the same
 * nulls, which its check refuses when mixed.)
 */
static char *
held_query(const FkSide *s)
{
	StringInfoData sql;
	Oid			pktypes[INDEX_MAX_KEYS];
	Oid			fktypes[INDEX_MAX_KEYS];

	side_types(s, pktypes, fktypes);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT m.* FROM " FK_MISSING_NAME " m WHERE EXISTS (SELECT 1 FROM %s f WHERE ",
					 rel_for_lookup(s->fkrelid));
	for (int i = 0; i < s->nkeys; i++)
	{
		char	   *fcol = psprintf("f.%s", quote_identifier(s->fkcols[i]));
		char	   *mcol = psprintf("m.c_%d", i + 1);
		bool		full = s->referencing && s->matchtype == FKCONSTR_MATCH_FULL;

		if (full)
			appendStringInfo(&sql, "%s((%s IS NULL AND %s IS NULL) OR ", i ? " AND " : "",
							 fcol, mcol);
		if (s->referencing)
			append_fk_qual(&sql, s, i, full || i == 0, fcol, fktypes[i],
						   s->ffeqop[i], mcol, s->types[i]);
		else
			append_fk_qual(&sql, s, i, i == 0, mcol, s->types[i], s->pfeqop[i],
						   fcol, fktypes[i]);
		if (full)
			appendStringInfoChar(&sql, ')');
	}
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * Raise the 23503 error for a violating value: the first row of the
 * current SPI result.
 */
static void
violation_error(const FkSide *s)
{
	StringInfoData cols;
	StringInfoData vals;
	Relation	fkrel;

	initStringInfo(&cols);
	initStringInfo(&vals);
	for (int i = 0; i < s->nkeys; i++)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);

		appendStringInfo(&cols, "%s%s", i ? ", " : "", quote_identifier(s->cols[i]));
		appendStringInfo(&vals, "%s%s", i ? ", " : "", v ? v : "null");
	}
	fkrel = table_open(s->fkrelid, NoLock);
	if (s->referencing)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("restore would leave table \"%s\" violating foreign key constraint \"%s\"",
						RelationGetRelationName(fkrel), s->conname),
				 errdetail("Key (%s)=(%s) is not present in table \"%s\".",
						   cols.data, vals.data, get_rel_name(s->pkrelid)),
				 errhint("Restore the change that removed the referenced row first, or together with this one."),
				 errtableconstraint(fkrel, s->conname)));
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("restore would leave table \"%s\" violating foreign key constraint \"%s\"",
					RelationGetRelationName(fkrel), s->conname),
			 errdetail("Key (%s)=(%s) is still referenced from table \"%s\".",
					   cols.data, vals.data, RelationGetRelationName(fkrel)),
			 errhint("Restore the change that made the referencing rows first, or together with this one."),
			 errtableconstraint(fkrel, s->conname)));
}

/*
 * Register tuplestore "values" (of tuple descriptor "desc") under "name" in
 * the current SPI connection.
 */
static void
register_values(const char *name, TupleDesc desc, Tuplestorestate *values)
{
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = pstrdup(name);
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = desc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = tuplestore_tuple_count(values);
	enr->reldata = values;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "guard: could not register the foreign key values to check");
}

/*
 * Check the collected values of side "s", in two steps (each planned with
 * the number of values it reads known): the values absent from the
 * referenced table, then whether a referencing row holds one, against the
 * latest snapshot as the foreign key's own checks.
 */
static void
check_side(FkSide *s)
{
	GuardAsRole owner;
	Tuplestorestate *missing;
	DestReceiver *dest;
	SPIExecuteOptions options;
	SPIPlanPtr	plan;
	MemoryContext old;

	guard_as_role_begin(&owner, InvalidOid);
	register_values(FK_ENR_NAME, s->desc, s->values);
	old = MemoryContextSwitchTo(fk_cxt);
	missing = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);
	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, missing, fk_cxt, true, NULL, NULL);
	memset(&options, 0, sizeof(options));
	options.dest = dest;
	if (SPI_execute_extended(missing_query(s), &options) != SPI_OK_SELECT)
		elog(ERROR, "guard: foreign key check failed");
	dest->rDestroy(dest);

	if (tuplestore_tuple_count(missing) > 0)
	{
		register_values(FK_MISSING_NAME, s->desc, missing);
		plan = SPI_prepare(held_query(s), 0, NULL);
		if (plan == NULL)
			elog(ERROR, "guard: could not prepare the foreign key check: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
								 InvalidSnapshot, false, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "guard: foreign key check failed");
		if (SPI_processed > 0)
			violation_error(s);
	}
	tuplestore_end(missing);
	guard_as_role_end(&owner);
}

/*
 * At the end of a restore: check the collected values of every foreign key
 * involved, as the extension owner (row level security must not hide
 * rows), and stop tracking.  Raises 23503 on the first violation.
 */
void
guard_fk_check(void)
{
	ListCell   *lt;

	if (fk_cxt == NULL)
		return;
	foreach(lt, fk_tables)
	{
		ListCell   *ls;

		foreach(ls, ((FkTable *) lfirst(lt))->sides)
		{
			FkSide	   *s = lfirst(ls);

			if (s->values != NULL && tuplestore_tuple_count(s->values) > 0 &&
				side_exists(s))
				check_side(s);
		}
	}
	fk_end();
}

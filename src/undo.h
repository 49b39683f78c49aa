/*-------------------------------------------------------------------------
 *
 * undo.h
 *	  The state of the undo of the rows of one change, shared by the files
 *	  of row undo: undo.c (the steps, from the table lock to the writes),
 *	  undo_judge.c (which rows and columns go back, conflicts, and the
 *	  errors that name a change),
 *	  undo_moves.c (rows whose key the change moved), undo_sql.c (the
 *	  statements that write them back), undo_plan.c (those statements
 *	  played on an overlay of the tables, for a dry run that cannot write)
 *	  and plan_store.c (the overlay's rows, within work_mem).
 *
 * undo.c calls the other files; undo_moves.c calls undo_judge.c and
 * undo_plan.c; undo_plan.c calls plan_store.c; none of them calls undo.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUARD_UNDO_H
#define GUARD_UNDO_H

#include "access/attmap.h"
#include "fmgr.h"
#include "utils/tuplestore.h"

#include "guard.h"

#define UNDO_MAX_SAMPLES	5
#define UNDO_ENR_NAME		"guard_restore_rows"

/* the last qual of a statement that writes rows back: counts them */
#define UNDO_TICK			" AND guard._restore_tick()"

/*
 * What a row to write back does, as the "op" column of the rows holds it.
 * UNDO_MOVE: an undone UPDATE that moved the row's key (or wrote an
 * identity column GENERATED ALWAYS, which UPDATE cannot write back): the
 * row is deleted at its key and inserted whole with its old one, all the
 * deletes before all the inserts, so that keys the change shifted or
 * swapped between its rows come back without a duplicate on the way.
 */
typedef enum UndoOp
{
	UNDO_DELETE_INSERTED,		/* 'I': undo of an INSERT */
	UNDO_UPDATE,				/* 'U': undo of an UPDATE, in place */
	UNDO_INSERT_DELETED,		/* 'D': undo of a DELETE */
	UNDO_MOVE,					/* 'K': undo of an UPDATE, delete and insert */
	UNDO_NOPS
} UndoOp;

extern const char guard_undo_opchar[UNDO_NOPS];

/* one column of the change being undone, mapped to the live table */
typedef struct RestoreColumn
{
	const char *name;
	int			recorded;		/* attnum - 1 in the recorded layout; -1: a
								 * column the table gained since */
	int			live;			/* attnum - 1 in the live table */
	bool		generated;
	bool		identity_always;	/* GENERATED ALWAYS AS IDENTITY */
	bool		used;			/* some UNDO_UPDATE row writes it back */
	int16		typlen;
	bool		typbyval;
} RestoreColumn;

typedef struct UndoMoves UndoMoves;

/* a conflicting row kept for the error */
typedef struct UndoSample
{
	int64		order;			/* see guard_undo_note_conflict() */
	char	   *key;
	char	   *laterkey;		/* whose later writes name change sets */
	int			nchangesets;
	int64		changesets[3];
} UndoSample;

/* the order of the samples of moved rows: after every row of the snapshot */
#define UNDO_MOVE_ORDER		(INT64CONST(1) << 62)

/* the undo of the rows of one change, from the table lock to the writes */
typedef struct RowUndo
{
	const GuardChange *change;
	GuardOnConflict mode;
	Datum		exclude;		/* the change sets restored together */
	Datum		restoring;		/* the changes restored together */
	bool		force;			/* write back without conflict checks */
	GuardPlan  *plan;			/* only plan, on this overlay (undo_plan.c) */

	/* the table and its columns */
	Relation	rel;			/* locked until the end of the transaction */
	char	   *qualname;
	RestoreColumn *cols;		/* the recorded columns the table still has,
								 * then the ones it gained since */
	int			ncols;
	int		   *colindex;		/* recorded attnum - 1 -> index in cols */
	const char *gone;			/* a recorded column the table lost since */
	GuardKeyScan ks;			/* the live rows by key */
	int			keycol[INDEX_MAX_KEYS]; /* the key's columns, in cols */
	Oid			eqop[INDEX_MAX_KEYS];	/* the key index's equality */

	/* the live row found by the last fetch: columns of its own table */
	AttrMap   **leafmaps;		/* per leaf of ks, by name; built on need */
	const AttrMap *livemap;		/* u->rel attnum - 1 -> the row's, or NULL */

	/*
	 * The rows to write back: k_1.., op, m, then v_N per column: the key
	 * the row has now, what to do, a bitmap (bytea) of the columns an
	 * UNDO_UPDATE writes back (for the other ops, not null when the row
	 * replaces a row that has its key now), and the value of column N.
	 */
	TupleDesc	enrdesc;
	int			enr_natts;
	Tuplestorestate *rows;
	Datum	   *values;			/* one row of enrdesc */
	bool	   *nulls;
	int64		napply[UNDO_NOPS];	/* rows in the tuplestore, by op */
	int64		nupdate_live;	/* ... of them UPDATEs whose key was found live
								 * when judged */
	bool		replaces;		/* some row replaces a row with its key */
	bool		by_tid;			/* enrdesc ends with t, the live row's tid */
	int64		ntid;			/* UPDATEs with t set */

	/* the row at hand */
	bool	   *write;			/* which columns it writes back */
	MemoryContext rowcxt;		/* scratch, reset for each row */
	Snapshot	snapshot;		/* what the rows are judged against */

	/* rows whose key the change moved */
	UndoMoves  *moves;

	/* partitions: whether a later change detached one (0: not looked) */
	int			detached;

	/* conflicts: the later writes (read on first need) answer the rows */
	GuardLaterWrites *later;
	GuardLaterProbe *asks;		/* rows waiting for them, packed */
	int16	   *typlen;			/* of the recorded columns, for packing */
	bool	   *typbyval;
	int64		conflicts;
	int64		skipped;
	int			nsamples;
	UndoSample	samples[UNDO_MAX_SAMPLES];	/* by order */
} RowUndo;

/* one statement that writes rows back, in the order they must run */
typedef struct UndoStatement
{
	char	   *sql;
	int64		rows;			/* rows it should reach */
	bool		counts;			/* its rows are rows restored */
} UndoStatement;

/* undo_judge.c */
extern void guard_undo_found(RowUndo *u);
extern Datum guard_undo_live(RowUndo *u, int c, bool *isnull);
extern void guard_undo_check_gone(RowUndo *u, const ShadowRow *row);
extern bool guard_undo_judge(RowUndo *u, const ShadowRow *row, bool live,
							 bool *apply, bool *replace, bool *ask);
extern bool guard_undo_judge_later(RowUndo *u, const ShadowRow *row,
								   const GuardLaterEntry *entry, bool *apply,
								   bool *replace);
extern void guard_undo_ask(RowUndo *u, const ShadowRow *row, int64 rowno);
extern void guard_undo_unpack_row(RowUndo *u, const char *data, Size len,
								  ShadowRow *row, int64 *rowno);
extern bool guard_undo_moves_key(RowUndo *u);
extern bool guard_undo_sample_wanted(RowUndo *u, int64 order);
extern void guard_undo_note_conflict(RowUndo *u, int64 order, const char *key,
									 const char *laterkey);
extern void guard_undo_conflict_error(RowUndo *u) pg_attribute_noreturn();

/* undo_moves.c */
extern void guard_undo_moves_add(RowUndo *u, const ShadowRow *row,
								 bool conflict);
extern void guard_undo_moves_finish(RowUndo *u);

/* undo_sql.c */
extern List *guard_undo_statements(RowUndo *u);

/* undo_plan.c */
extern void guard_undo_plan_apply(RowUndo *u, GuardRestoreReport *report);

/*
 * plan_store.c: the overlay's rows.  A table of the overlay (a partition
 * tree is one, by its root): how its keys compare, and its columns.
 */
typedef struct PlanTable
{
	Oid			root;
	TupleDesc	desc;			/* the root's columns */
	int			nkeys;
	int16		keylen[INDEX_MAX_KEYS];
	bool		keybyval[INDEX_MAX_KEYS];
	Oid			collation[INDEX_MAX_KEYS];
	FmgrInfo	eq[INDEX_MAX_KEYS];
	FmgrInfo	hash[INDEX_MAX_KEYS];
	bool		hashable;		/* every key column has a hash function */
	List	   *maps;			/* undo_plan.c's PlanMap, per relation */
} PlanTable;

/* the row the overlay holds at a key */
typedef struct PlanRow
{
	uint32		seq;			/* the row's number (its made-up tid) */
	bool		present;		/* false: the key holds no row */
	Datum	   *key;
	Datum	   *values;			/* by the root's attnum - 1 */
	bool	   *nulls;
} PlanRow;

typedef struct PlanStore PlanStore;

extern PlanStore *guard_plan_store_begin(MemoryContext cxt);
extern void guard_plan_store_end(PlanStore *s);
extern bool guard_plan_store_get(PlanStore *s, const PlanTable *pt,
								 Datum *key, PlanRow *row);
extern uint32 guard_plan_store_put(PlanStore *s, const PlanTable *pt,
								   Datum *key, const PlanRow *row);

#endif							/* GUARD_UNDO_H */

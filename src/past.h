/*-------------------------------------------------------------------------
 *
 * past.h
 *	  The state of a walk into a table's past, shared by past.c (the rows
 *	  and their versions) and past_walk.c (the changes, newest first),
 *	  which calls past.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAST_H
#define PAST_H

#include "nodes/execnodes.h"
#include "utils/hsearch.h"

struct GuardPast
{
	MemoryContext cxt;			/* everything of the walk */
	Relation	rel;			/* the table, locked by the caller */
	Oid			relid;
	char	   *relname;		/* for messages */
	bool		strict;			/* refuse what leaves the rows unknowable */
	int			natts;			/* of the table now, dropped ones included */
	GuardPastColumn *cols;		/* the columns where the walk is */
	int			nkeys;			/* the table's key now */
	AttrNumber	keys[INDEX_MAX_KEYS];
	Snapshot	snapshot;		/* the caller's, registered */
	GuardKeyScan ks;			/* the rows now, by key */
	HTAB	   *entries;		/* PastEntry by key: the rows touched */
	List	   *relids;			/* the table and its partitions */
	List	   *leaves;			/* PastLeaf: partitions' rows as the table's */
	int64		undoing;		/* the change being undone, 0 when none */
	EState	   *estate;			/* stored generated columns, if any */
	ResultRelInfo *rri;
	TupleTableSlot *genslot;
};

/* past.c */
extern void guard_past_undo_rows(GuardPast *p, GuardPastChange *c,
								 GuardPastOnRow on_row, void *arg);
extern TupleTableSlot *guard_past_leaf_slot(GuardPast *p, Relation leaf,
											TupleTableSlot *slot);

#endif							/* PAST_H */

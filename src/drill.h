/*-------------------------------------------------------------------------
 *
 * drill.h
 *	  The state of a restore drill (guard.verify_restore()), shared by
 *	  drill.c (the function, and the claims it reads from the changes) and
 *	  drill_judge.c (judging the claims key by key, and counting).
 *
 * drill.c calls drill_judge.c, not the other way round.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUARD_DRILL_H
#define GUARD_DRILL_H

#include "utils/tuplesort.h"

#include "guard.h"

/* a claim: sorted by (key, stage, rowno), with what judging it needs */
#define CL_KEY		1			/* bytea: "relid keytext" */
#define CL_STAGE	2			/* int8: change * 2 + pass */
#define CL_ROWNO	3			/* int8: the row's position in the snapshot */
#define CL_DATA		4			/* bytea: see drill_claim() */
#define CL_NATTS	4

/* a verdict: sorted by (change, rowno, pass) */
#define VD_CHANGE	1
#define VD_ROWNO	2
#define VD_PASS		3
#define VD_OK		4
#define VD_NATTS	4

/* claims of the rows that existed before a change, and of the keys it filled */
#define PASS_PRESENT	0
#define PASS_ABSENT		1

/* the result for one change */
typedef struct DrillResult
{
	int64		change_id;
	char	   *relation;
	int64		checked;		/* rows compared */
	int64		matching;		/* ... that are back to their before-image */
} DrillResult;

/* one change of the change set, and the key scan that finds its rows */
typedef struct DrillChange
{
	GuardChange change;
	Relation	rel;			/* NULL until a claim needs it */
	GuardKeyScan ks;
	int16	   *typlen;			/* by attnum - 1 */
	bool	   *typbyval;
} DrillChange;

/* the state of one drill */
typedef struct Drill
{
	MemoryContext cxt;			/* the results live here */
	List	   *ids;			/* the change set's changes, newest first */
	List	   *results;		/* DrillResult, oldest change first */
	MemoryContext drillcxt;		/* the rest */
	MemoryContext rowcxt;		/* per row scratch */
	int			nchanges;
	DrillChange *changes;		/* oldest first */
	HTAB	   *moved;			/* MovedKey by the key a row has now */
	GuardPlan  *plan;			/* the restore only planned: its overlay */
	TupleDesc	claimdesc;
	Tuplesortstate *claims;
	TupleTableSlot *claimslot;
	TupleDesc	verdictdesc;
	Tuplesortstate *verdicts;
	TupleTableSlot *verdictslot;
} Drill;

/* drill_judge.c */
extern void guard_drill_judge(Drill *d);
extern void guard_drill_count(Drill *d);
extern void guard_drill_close(Drill *d);

#endif							/* GUARD_DRILL_H */

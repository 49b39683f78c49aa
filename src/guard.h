/*-------------------------------------------------------------------------
 *
 * guard.h
 *	  Private declarations shared by the files of the guard extension.
 *
 * The path of a guarded write: the capture trigger (capture.c) reads the
 * statement's transition tables, encodes before-images into chunks
 * (shadow.c) and records the change and its change set (changes.c).
 * policy.c keeps who is protected and how, relcache.c caches it per
 * relation; hooks.c follows statements.
 *
 * The files form layers: a file calls only files below it, never one
 * above it, so that the file-to-file call graph has no cycle.
 *
 *	guard.c			_PG_init: the init functions of guc, changes, invariants,
 *					hooks and rails; nothing calls it
 *	hooks.c			executor and utility hooks -> ddl, labels, policy,
 *					changes, publication, writer
 *	publication.c	publications FOR ALL TABLES without guard's tables;
 *					a subscriber's records kept its own
 *	restore_to.c	guard.restore_to(), one table or a group -> restore,
 *					later, policy, relcache
 *	restore.c		guard.restore(), the driver of every restore and dry
 *					run -> dryrun, schema_undo, undo, undo_plan, fkcheck,
 *					changeset_restore, changes, bookkeeping, policy
 *	dryrun.c		which dry runs may plan instead of writing -> spi
 *	changeset_restore.c  a restore's change set: label, what it undoes,
 *					the changes it makes active again -> changes,
 *					bookkeeping, label_state
 *	ddl.c			schema changes of protected tables -> drop,
 *					invariants, shadow, changes, policy, rows, ddl_*
 *	drop.c			DROPs that reach protected tables -> inuse, trash,
 *					trial, depend, policy
 *	inuse.c			trashed tables in the way of a DROP -> trash, link
 *	trash.c			DROP TABLE as a move into the trash, undrop, purge
 *					-> relink, link, depend, changes
 *	relink.c		a trashed table's links made again by the undo -> link
 *	link.c			a trashed table's links (foreign keys, parents, type,
 *					publications, owner), saved and cut
 *	depend.c		views and statistics on a table, saved as SQL
 *	trial.c			a drop run in a subtransaction rolled back
 *	schema_undo.c	the undo of schema changes -> ddl_*, undo
 *	ddl_alter.c		ALTER TABLE subcommands, each kind recorded and undone
 *					side by side; the lookup of every kind -> the other
 *					ddl_* files
 *	ddl_constraint.c, ddl_index.c, ddl_table.c, ddl_column.c
 *					constraints; indexes; SET SCHEMA and COMMENT; what a
 *					column's drop or type change loses -> ddl_objects,
 *					ddl_util
 *	ddl_objects.c	a table's parts as the SQL that recreates them ->
 *					ddl_util
 *	ddl_util.c		records, details, running an undo -> changes, policy,
 *					undo, later
 *	capture.c		the capture trigger -> invariants_stmt, rails, shadow,
 *					policy, relcache
 *	diff.c			guard.diff() -> shadow, changes, policy, rows
 *	invariants.c	add/drop/validate/check invariants -> invariants_eval,
 *					policy, relcache
 *	invariants_ddl.c  what a schema change checks -> invariants_commit,
 *					invariants_eval, policy, relcache
 *	invariants_stmt.c  invariants checked per statement -> invariants_commit,
 *					invariants_eval, changes, policy, relcache
 *	invariants_commit.c  deferred invariants, at COMMIT -> invariants_eval,
 *					changes, policy, relcache
 *	invariants_eval.c  evaluating invariants, reporting violations ->
 *					changes, relcache, rows
 *	rails.c			require_where, max_rows, max_fraction -> relcache
 *	shadow.c		before-images in chunks -> changes, rows
 *	labels.c		migration tools' bookkeeping rows recognised at the
 *					end of their INSERT, labels given -> label_state
 *	changes.c		change sets, change records, and the statement
 *					finishing now (which hooks.c sets) -> label_state,
 *					bookkeeping, layout
 *	label_state.c	the label in force for a change, the change sets
 *					waiting for a tool's bookkeeping row to name them
 *	bookkeeping.c	the tools' rows when a restore undoes a migration; the
 *					sqitch registry a change set waits for -> writer
 *	writer.c		rows into guard's own tables (a change record's
 *					writer kept open across a top-level statement) ->
 *					catalog
 *	layout.c		a table's columns and key as a change records them
 *					(guard.layout) -> relcache
 *	policy.c		protect/unprotect and guard's triggers, who may manage
 *					or read a table -> relcache, rows
 *	progress.c		guard.restore_progress(): running restores in shared
 *					memory -> spi
 *	spi.c			SQL as another role with a pinned search_path; guard's
 *					own DDL, marked by guard_internal_ddl
 *	catalog.c		guard's own relations (OIDs, opening with a layout check)
 *	rows.c			a table's key columns, live rows by key -> relcache
 *	relcache.c		the per-relation cache: policy, key, layout id,
 *					invariants and their compiled row checks
 *	guc.c			settings and the preload check
 *
 * Any file above them may call spi.c, catalog.c, rows.c, relcache.c and
 * guc.c; spi.c and relcache.c call only catalog.c, rows.c only relcache.c,
 * and catalog.c and guc.c call no other file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUARD_H
#define GUARD_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "catalog/dependency.h"
#include "datatype/timestamp.h"
#include "executor/execdesc.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/nodes.h"
#include "nodes/pg_list.h"
#include "nodes/plannodes.h"
#include "storage/lockdefs.h"
#include "tcop/utility.h"
#include "utils/hsearch.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/snapshot.h"

/*
 * guard's own error codes, class ZG: the SQL standard leaves classes whose
 * first character is 5-9 or I-Z to implementations (README.md lists them).
 */
#define ERRCODE_GUARD_NOT_PRELOADED		ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
#define ERRCODE_GUARD_SNAPSHOT_TOO_LARGE	MAKE_SQLSTATE('Z','G','0','0','1')
#define ERRCODE_GUARD_RESTORE_CONFLICT	MAKE_SQLSTATE('Z','G','0','0','2')
#define ERRCODE_GUARD_RAIL				MAKE_SQLSTATE('Z','G','0','0','3')

/* guc.c: settings and the preload check */
typedef enum GuardMode
{
	GUARD_MODE_ENFORCE,
	GUARD_MODE_WARN
} GuardMode;

extern bool guard_enabled;
extern int	guard_mode;
extern int	guard_retention;
extern int	guard_max_snapshot_size;
extern char *guard_notify_channel;
extern char *guard_label_setting;
extern bool guard_preloaded;

extern void guard_guc_init(void);
extern void guard_require_preload(void);

/* catalog.c: guard's own relations */
extern Oid	guard_namespace(void);
extern Oid	guard_relid(const char *relname);

/* hooks.c: executor and utility hooks */
extern void guard_install_hooks(void);

/* publication.c: guard's own tables stay out of publications FOR ALL TABLES */
extern PlannedStmt *guard_publication_utility(PlannedStmt *pstmt);

/* policy.c: who is protected and how */
typedef enum GuardCapture
{
	GUARD_CAPTURE_NONE,
	GUARD_CAPTURE_DML,
	GUARD_CAPTURE_DDL,
	GUARD_CAPTURE_ALL
} GuardCapture;

typedef struct GuardPolicy
{
	Oid			relid;			/* the table the policy is on (may be an
								 * ancestor of the relation asked about) */
	bool		found;
	GuardCapture capture;
	int			mode;			/* GuardMode, or -1 for the GUC */
	int64		min_rows;
	int64		max_rows;		/* 0: none */
	double		max_fraction;	/* 0: none */
	bool		require_where;
} GuardPolicy;

/* what guard_open_table_to_manage() opens a table for, for its messages */
typedef enum GuardManage
{
	GUARD_MANAGE_PROTECT,
	GUARD_MANAGE_UNPROTECT,
	GUARD_MANAGE_ADD_INVARIANT,
	GUARD_MANAGE_DROP_INVARIANT,
	GUARD_MANAGE_VALIDATE_INVARIANT
} GuardManage;

extern int	guard_policy_mode(const GuardPolicy *policy);
extern bool guard_may_read_relation(Oid relid);
extern Relation guard_open_table_to_manage(Oid relid, GuardManage action);
extern bool guard_policy_wants_triggers(const GuardPolicy *policy);
extern bool guard_may_manage(Oid relid);
extern void guard_sync_relation(Oid relid);
extern void guard_capture_triggers_always(Oid relid);

/* relcache.c: what guard knows of one relation, cached */
typedef struct GuardKey
{
	Oid			indexoid;		/* primary key, else replica identity index */
	int			nkeys;			/* 0: no such index, or it has an expression */
	AttrNumber	attnums[INDEX_MAX_KEYS];
	Oid			eqop[INDEX_MAX_KEYS];	/* from the index's operator family */
	Oid			eqproc[INDEX_MAX_KEYS];
	Oid			collation[INDEX_MAX_KEYS];
} GuardKey;

typedef struct GuardInvariant
{
	char	   *name;
	char	   *row_check;		/* NULL for a query invariant */
	char	   *query;			/* NULL for a row check */
	bool		deferred;
	char	   *owner;			/* the role that declared it */
	char	   *search_path;	/* the search_path it was declared under */
	bool		validated;		/* false: added accepting the rows there,
								 * which whole-table checks then skip */
} GuardInvariant;

typedef struct GuardRelCache
{
	Oid			relid;
	GuardPolicy policy;			/* policy.found is true */
	GuardKey	key;
	int64		layout_id;		/* in guard.layout; 0 until layout.c stores it */
	int			ninvariants;	/* declared on the table policy.relid */
	GuardInvariant *invariants;
	bool		has_deferred;	/* some invariant is deferred */
	Expr	  **row_checks;		/* per invariant, see guard_relcache_row_check() */
	bool		checks_compiled;	/* some row_checks[] are set */
	MemoryContext cxt;			/* holds the entry and all it points to */
	struct GuardRelCache *next_retired; /* relcache.c's own */
} GuardRelCache;

extern GuardRelCache *guard_relcache_lookup(Relation rel);
extern const GuardPolicy *guard_policy_lookup(Relation rel);
extern const GuardKey *guard_relation_key(Relation rel, GuardKey *buf);
extern Expr *guard_relcache_row_check(GuardRelCache *entry, Relation rel,
									  int i);
extern void guard_relcache_set_layout(GuardRelCache *entry, int64 layout_id,
									  bool inserted);
extern void guard_relcache_forget(Oid relid);
extern void guard_relcache_invalidate(Oid relid);
extern bool guard_policy_read(Oid relid, GuardPolicy *policy);
extern int	guard_invariants_read(Oid relid, MemoryContext cxt,
								  GuardInvariant **defs);
extern void guard_key_read(Relation rel, GuardKey *key);
extern Expr *guard_compile_row_check(Relation rel, const char *text,
									 const char *search_path);

/* spi.c: guard's own SQL as another role, search_path pinned, SPI open */
typedef struct GuardAsRole
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} GuardAsRole;

extern void guard_as_role_begin(GuardAsRole *s, Oid role);
extern void guard_as_role_path_begin(GuardAsRole *s, Oid role,
									 const char *search_path, bool restricted);
extern void guard_as_role_end(GuardAsRole *s);
extern ErrorData *guard_subxact_abort(MemoryContext oldcxt,
									  ResourceOwner oldowner);
extern void guard_subxact_rollback(MemoryContext oldcxt,
								   ResourceOwner oldowner);
extern List *guard_spi_addresses(MemoryContext cxt);
extern void guard_run_sql(const char *sql, int nargs, Oid *types,
						  Datum *values, const char *nulls);
extern bool guard_internal_ddl;
extern void guard_run_internal_ddl(Oid role, const char *search_path,
								   List *statements);

/*
 * catalog.c: column numbers of guard's own tables (sql/guard--0.1.sql);
 * guard_open() checks the count, so that a library and a script of
 * different versions fail cleanly instead of misreading rows.
 */
#define Natts_guard_policy			9
#define Natts_guard_changeset		7
#define Anum_changeset_label		4
#define Natts_guard_change			18
#define Anum_change_relid			6
#define Anum_change_relation		7
#define Anum_change_kind			8
#define Anum_change_statement		9
#define Anum_change_state			10
#define Anum_change_layout			11
#define Anum_change_restored_by		12
#define Anum_change_detail			13
#define Anum_change_nrows			14
#define Anum_change_data			15
#define Anum_change_label			16
#define Anum_change_label_source	17
#define Anum_change_bookkeeping		18
#define Natts_guard_label_wait		2
#define Natts_guard_layout			6
#define Anum_layout_relid			2
#define Natts_guard_snapshot		4
#define Natts_guard_invariant		9

extern Relation guard_open(const char *relname, LOCKMODE lockmode, int natts);

/* changes.c: change sets and change records */

/* the statement being finished, for change records (set by hooks.c) */
typedef struct GuardStatement
{
	const char *text;			/* source text, not NUL-terminated at len */
	int			len;
	CmdType		cmd;			/* CMD_UNKNOWN for utility (COPY) */
	bool		is_copy;
} GuardStatement;

extern const GuardStatement *guard_set_statement(const GuardStatement *stmt);
/* the size that holds what guard_statement_brief() returns */
#define GUARD_STATEMENT_BRIEF_SIZE	512
extern char *guard_statement_brief(void);

typedef struct GuardChange
{
	int64		change_id;
	int64		changeset_id;
	Oid			relid;
	char	   *relation;
	char	   *kind;
	char	   *state;
	char	   *detail;			/* JSON: what a schema change's undo needs */
	bytea	   *inline_chunk;	/* the snapshot's first chunk, or NULL */
	int			natts;			/* layout at capture time, by attnum */
	char	  **attnames;		/* NULL: dropped */
	Oid		   *atttypes;
	int			nkeys;
	AttrNumber	keys[INDEX_MAX_KEYS];
	char	   *label;			/* the label in force when it was made */
	char	   *bookkeeping;	/* JSON: the tool's row that named it */
} GuardChange;

extern bool guard_change_read(int64 change_id, GuardChange *change);
extern char *guard_change_statement(int64 change_id);
extern int64 guard_changeset_current(bool create);
extern int64 guard_change_for_statement(Relation rel, const char *kind,
									   const char **final_kind);
extern int64 guard_change_reserve(Relation rel);
extern int64 guard_change_record(Relation rel, const char *kind,
								 const char *detail);
extern void guard_change_insert(Relation rel, int64 id, const char *kind,
								const char *detail, bytea *first, int32 nrows);
extern void guard_changes_init(void);
extern int32 *guard_change_chunk_counter(void);
extern void guard_changes_provisional(void);
extern bool guard_changes_are_provisional(void);
extern bool guard_change_id_provisional(int64 id);

/* label_state.c: the label in force, the changes waiting for one */
extern void guard_label_state_init(void);
extern void guard_label_in_force(int64 changeset_id, Datum *values,
								 bool *nulls);
extern void guard_label_set_xact(const char *label);
extern void guard_label_restoring(void);
extern int64 *guard_unlabelled_changesets(int *n);
extern void guard_unlabelled_forget(void);
extern void guard_label_state_discard(void);
extern void guard_session_label_set(const char *label, const char *source,
									const char *bookkeeping);
extern void guard_label_changes(const int64 *changesets, int n,
								const char *label, const char *source,
								const char *bookkeeping);

/* bookkeeping.c: migration tools' rows, as guard's labels name them */
extern bool guard_bookkeeping_busy;
extern void guard_registry_link(int64 changeset_id);
extern void guard_registry_vxid(char *buf, size_t len);
extern void guard_bookkeeping_forget(List *changes, bool plan);
extern void guard_bookkeeping_recall(Datum restores, bool plan);
extern void guard_bookkeeping_put_report(FunctionCallInfo fcinfo);

/* labels.c: bookkeeping rows of migration tools recognised as written */
extern void guard_labels_after_statement(QueryDesc *queryDesc);

/* layout.c: a table's columns and key as a change records them */
extern int64 guard_layout_id(Relation rel);
extern void guard_layout_read(int64 layout_id, GuardChange *change);

/* rows.c: a table's key, and its live rows by key */
extern int	guard_key_attnums(Relation rel, AttrNumber *keys);

typedef struct GuardKeyLeaf
{
	Relation	rel;
	Relation	index;
	Oid			eqop[INDEX_MAX_KEYS];	/* the key index's equality */
	Oid			eqproc[INDEX_MAX_KEYS];
	Oid			collation[INDEX_MAX_KEYS];
	TupleTableSlot *slot;
	struct IndexScanDescData *scan; /* kept across fetches, or NULL */
	/* ordered fetches (rows.c, GuardKeyScan.ordered); one-column keys */
	AttrNumber	keyattno;		/* the key column in rel, 0: not possible */
	Oid			geproc;			/* the key opfamily's >= */
	FmgrInfo   *cmpproc;		/* ... and its ordering (BTORDER_PROC) */
	bool		typbyval;
	int16		typlen;
	bool		pos_valid;		/* the scan stands at the row in slot ... */
	bool		pos_end;		/* ... or past its last row */
	Datum		prev;			/* no live key lies between the key last
								 * asked for and the row the scan stands at */
	bool		prev_valid;
} GuardKeyLeaf;

typedef struct GuardKeyScan
{
	int			nkeys;
	int			nleaves;
	GuardKeyLeaf *leaves;
	bool		owns_leaves;
	MemoryContext cxt;			/* where the leaves' scans live */
	bool		ordered;		/* keys come mostly ascending: step the
								 * scan forward instead of descending */
	Relation	found;			/* after a fetch: the table the row is in */
	TupleTableSlot *slot;		/* ... and the row */
} GuardKeyScan;

extern bool guard_keyscan_begin(GuardKeyScan *ks, Relation rel,
								const GuardChange *change);
extern bool guard_keyscan_fetch(GuardKeyScan *ks, Datum *keyvalues,
								Snapshot snapshot);
extern char *guard_key_text(const GuardChange *change, Datum *keyvalues);
extern char *guard_value_text(Datum value, Oid type);
extern void guard_change_from_relation(Relation rel, GuardChange *layout);
extern void guard_keyscan_end(GuardKeyScan *ks);

/* invariants_stmt.c, invariants_ddl.c: invariants, checked per statement */
typedef struct GuardInvariantSet GuardInvariantSet;

extern GuardInvariantSet *guard_invariants_begin(Relation rel,
												 const GuardPolicy *policy);
extern void guard_invariants_row(GuardInvariantSet *set, TupleTableSlot *slot,
								 int64 rowno);
extern void guard_invariants_deleted(GuardInvariantSet *set,
									 TupleTableSlot *slot, int64 rowno);
extern void guard_invariants_end(GuardInvariantSet *set, int64 change_id);
extern bool guard_invariants_alter_writes(AlterTableCmd *cmd);
extern void guard_invariants_after_ddl(Relation rel);

/* invariants_commit.c: deferred invariants, checked at COMMIT */
typedef struct GuardPending GuardPending;

extern void guard_invariants_init(void);
extern GuardPending *guard_deferred_pending(Oid relid);
extern void guard_deferred_track(GuardPending *p, Relation rel,
								 TupleTableSlot *slot, const AttrNumber *keys,
								 int nkeys, bool failing, int64 rowno);
extern void guard_deferred_arm(Oid relid, int64 change_id, bool failed);
extern void guard_deferred_whole_table(Oid relid);

/* invariants_eval.c: evaluating invariants, reporting violations */
#define GUARD_MAX_SAMPLES		5

typedef enum GuardCheckedWhen
{
	GUARD_CHECKED_AT_STATEMENT_END, /* at the end of a statement */
	GUARD_CHECKED_AT_COMMIT,	/* by the deferred check at commit */
	GUARD_CHECKED_AFTER_DDL,	/* over the table after a schema change */
	GUARD_CHECKED_AT_COMMIT_AFTER_DDL	/* the same, deferred to commit */
} GuardCheckedWhen;

/* when and after what a violation was found, for its DETAIL */
typedef struct GuardCheckedAt
{
	GuardCheckedWhen when;
	int64		change_id;		/* the change checked, 0 if none recorded */
	const char *statement;		/* the statement (brief), NULL if unknown */
	bool		wrote_failing;	/* at commit: "statement" is the last that
								 * wrote rows failing a deferred check */
} GuardCheckedAt;

/* a row failing a deferred row check, to re-check at commit */
typedef struct GuardFailingKey
{
	char		key[NAMEDATALEN * 4];	/* as guard_slot_key_text() prints it */
	Datum	   *values;
} GuardFailingKey;

/* the invariants declared on one table, see guard_invariants_of() */
typedef struct GuardInvariantList
{
	Relation	rel;
	GuardRelCache *entry;		/* the table's cache entry, or NULL */
	int			n;
	GuardInvariant *defs;
	Expr	  **checks;			/* compiled here when entry is NULL */
} GuardInvariantList;

extern void guard_invariants_of(Relation rel, GuardInvariantList *list);
extern Expr *guard_invariant_row_check(GuardInvariantList *list, int i);
extern char *guard_slot_key_text(Relation rel, TupleTableSlot *slot,
								 const AttrNumber *keys, int nkeys,
								 int64 rowno);
extern char *guard_sample_keys(List *samples);
extern void guard_report_violation(int mode, Oid relid, const char *relation,
								   const char *invariant, int64 rows,
								   List *samples, const GuardCheckedAt *at);
extern bool guard_run_query_invariant(const GuardInvariant *def,
									  const char *relation);
extern void guard_check_rows(GuardInvariantList *list, const bool *which,
							 HTAB *keys, int64 *failing,
							 List **samples);

/* ddl.c: schema changes recorded (calls drop.c) */
extern List *guard_ddl_before(PlannedStmt *pstmt, bool events, Node **replaced,
							  bool *hold_cascade);
extern void guard_ddl_after(List *after);

/* drop.c: DROP statements that reach protected or trashed tables */
extern bool guard_drop_fires_events(Node *parsetree, ProcessUtilityContext context);
extern Node *guard_drop_before(Node *parsetree, bool events, bool *hold_cascade);
extern List *guard_drop_named_relations(DropStmt *drop);

/* inuse.c: trashed tables in the way of a DROP of what they use */
extern void guard_inuse_before_drop(Node *parsetree);
extern void guard_inuse_roles(List *roleids, bool dropping_owned);
extern void guard_inuse_dropped(List *dropped, List *units);
extern void guard_inuse_tablespace(DropTableSpaceStmt *stmt, bool isTopLevel);

/* trial.c: a drop run and rolled back, to learn what it would do */
typedef struct GuardTrialMessage
{
	int			elevel;
	int			sqlerrcode;
	char	   *message;
	char	   *detail;
	char	   *detail_log;
	char	   *hint;
	bool		cascade;		/* PostgreSQL's "drop cascades to" notice */
} GuardTrialMessage;

typedef struct GuardTrial
{
	List	   *dropped;		/* ObjectAddress *, in deletion order */
	List	   *messages;		/* GuardTrialMessage * */
} GuardTrial;

extern void guard_trial_install(void);
extern void guard_trial(void (*fn) (void *arg), void *arg, GuardTrial *trial);
extern void guard_trial_emit(const GuardTrial *trial, bool cascade_only);
extern int	guard_trial_hold_begin(int *saved);
extern void guard_trial_hold_end(int nestlevel, int saved, bool ok);

/* trash.c: DROP TABLE as a move into the trash, undrop, purge */
#define GUARD_TRASH_SCHEMA	"guard_trash"

extern void guard_json_field(StringInfo buf, const char *name,
							 const char *value);
extern Oid	guard_trash_namespace(bool create);
extern bool guard_trash_is_empty(void);
extern void guard_trash_unit(Oid root, List *tree, List *not_kept);
extern void guard_trash_purge(List *roots, const char *why, bool drop);
extern void guard_undrop_table(Oid relid,
							   const char *(*schema_of) (Oid relid, void *arg),
							   const char *(*name_of) (Oid relid, void *arg),
							   void *arg);
extern void guard_recreate_dependents(List *statements);

/* relink.c: a trashed table's links made again by the undo */
extern void guard_link_restore(const char *directive);

/* link.c: a trashed table's links to live tables, saved and cut */
extern List *guard_links_save(List *tree, ObjectAddresses *deletions);
extern void guard_links_unlink_parents(List *tree);
extern void guard_links_drop_crossing(List *tree);
extern bool guard_in_trash(Oid relid);
extern Oid	guard_trash_root(Oid relid);
extern void guard_link_append(Oid root, const char *directive);

/* depend.c: a protected table's outside dependents, saved as SQL */
extern List *guard_dependents_save(List *tree, ObjectAddresses *deletions);
extern Oid	guard_object_relation(const ObjectAddress *object);

/* rails.c: guard rails */
extern void guard_check_row_limits(Relation rel, const GuardPolicy *policy,
								   int event, int64 nrows);
extern void guard_rails_install(void);

/* writer.c: rows into guard's own tables, constraints and indexes included */
typedef struct GuardWriter GuardWriter;

extern GuardWriter *guard_writer_begin(const char *relname, int natts);
extern void guard_writer_add(GuardWriter *w, Datum *values, bool *nulls);
extern void guard_writer_end(GuardWriter *w);
extern void guard_writer_insert(const char *relname, int natts,
								Datum *values, bool *nulls);
extern void guard_writer_close_kept(void);

/* shadow.c: packed before-images */
typedef enum GuardRowOp
{
	GUARD_OP_INSERT = 1,
	GUARD_OP_UPDATE = 2,
	GUARD_OP_DELETE = 3
} GuardRowOp;

typedef struct ShadowWriter ShadowWriter;

/*
 * Asked by a ShadowWriter when its first chunk is full: the change the
 * chunks belong to and that change's chunk counter.  Returns true if it
 * keeps the chunk itself (a copy, inline in the change record), false to
 * have it written to guard.snapshot like the others.
 */
typedef bool (*ShadowOpenChange) (void *arg, bytea *first, int32 nrows,
								  int64 *change_id, int32 **chunkno);

extern ShadowWriter *shadow_writer_begin(Relation rel, int64 limit,
										 bool enforce,
										 ShadowOpenChange open_change,
										 void *arg);
extern void shadow_add_update(ShadowWriter *w, TupleTableSlot *oldslot,
							  TupleTableSlot *newslot);
extern void shadow_add_delete(ShadowWriter *w, TupleTableSlot *oldslot);
extern void shadow_add_insert(ShadowWriter *w, TupleTableSlot *newslot);
extern void shadow_add_column(ShadowWriter *w, TupleTableSlot *slot,
							  AttrNumber attnum);
extern int64 shadow_writer_end(ShadowWriter *w);
extern void *shadow_writer_arg(ShadowWriter *w);

/* capture.c: a snapshot of rows of one change, its record opened on need */
extern ShadowWriter *guard_capture_begin(Relation rel, const char *kind,
										 int64 limit, bool enforce);
extern int64 guard_capture_end(ShadowWriter *w);


/* one decoded row of a snapshot */
typedef struct ShadowRow
{
	GuardRowOp	op;
	int			natts;			/* length of the arrays below */
	bool	   *captured;		/* [attnum - 1]: a before-value is present */
	Datum	   *values;			/* before-values (UPDATE, DELETE) */
	bool	   *nulls;
	Datum	   *keyvalues;		/* key of the row after the change */
	uint32		hash;			/* hash of the after-values (UPDATE, INSERT) */
} ShadowRow;

typedef struct ShadowReader ShadowReader;

extern ShadowReader *shadow_open(int64 change_id, int natts,
								 const Oid *types, const AttrNumber *keys,
								 int nkeys, bytea *inline_chunk);
extern bool shadow_next(ShadowReader *r, ShadowRow *row);
extern void shadow_close(ShadowReader *r);
extern uint32 shadow_hash_value(Datum value, bool isnull, int16 typlen,
								bool typbyval, uint32 hash);

/*
 * Restore, from the top down: drill.c (verify_restore; with drill_judge.c
 * behind the private drill.h) -> restore.c (the SQL functions and the
 * driver; restore_rate.c the estimates) -> schema_undo.c (schema change recipes) -> undo.c (row undo;
 * with undo_moves.c, undo_judge.c, undo_sql.c, undo_plan.c and
 * plan_store.c behind the private undo.h) -> undo_target.c (the table
 * written, and the context of the writes), fkcheck.c (the foreign keys
 * checked at the end of a restore) and later.c (the later writes, sorted
 * by key).  A dry run that cannot write plans instead (undo_plan.c), and
 * the drill reads the plan through undo_plan.c too.
 */
typedef enum GuardOnConflict
{
	GUARD_ON_CONFLICT_ABORT,
	GUARD_ON_CONFLICT_SKIP,
	GUARD_ON_CONFLICT_OVERWRITE
} GuardOnConflict;

/* one row of a restore's report */
typedef struct GuardRestoreReport
{
	int64		change_id;
	int64		changeset_id;
	char	   *relation;
	char	   *kind;
	int64		restored;
	int64		skipped;
	int64		conflicts;
	List	   *objects;		/* text: other objects the undo dropped or
								 * recreated ("drop index public.t_c_idx") */
	double		seconds;		/* how long the undo took */
	bool		has_estimate;	/* earlier restores gave a rate */
	double		estimate;		/* ... and the seconds it predicts */
} GuardRestoreReport;

/*
 * undo_plan.c: a dry run that cannot write (hot standby, read-only
 * transaction) plays row undo's writes on an overlay of the tables
 * (plan_store.c keeps its rows within work_mem); lookups by key read the
 * overlay first.
 */
typedef struct GuardPlan GuardPlan;

extern bool guard_plan_only(void);
extern GuardPlan *guard_plan_create(bool lock);
extern LOCKMODE guard_plan_lockmode(GuardPlan *plan);
extern void guard_plan_free(GuardPlan *plan);
extern void guard_plan_set_final(GuardPlan *plan);
extern bool guard_plan_fetch(GuardPlan *plan, GuardKeyScan *ks, Relation rel,
							 const GuardChange *change, Datum *keyvalues,
							 Snapshot snapshot);

/*
 * restore.c: the driver, for the drill and restore_to.c; "plan" is the
 * overlay of a dry run that only planned, NULL if it wrote
 */
typedef void (*GuardRestoreInspect) (List *reports, GuardPlan *plan,
									 void *arg);

extern GuardOnConflict guard_restore_parse_on_conflict(text *arg);
extern void guard_restore_check_args(FunctionCallInfo fcinfo, uint32 nullable);
extern void guard_restore_check_writable(bool dry_run);

/* changeset_restore.c: the change set of a restore */
extern void guard_changeset_begin_restore(int64 restore_of, List *changes);
extern void guard_changeset_plan_restore(List *changes);

/* dryrun.c: the dry runs that may only plan */
extern bool guard_dry_run_may_plan(List *ids);
extern List *guard_restore_select_ids(const char *sql, int nargs, Oid *types,
									  Datum *values);
extern void guard_restore_put_reports(FunctionCallInfo fcinfo, List *reports);
extern List *guard_restore_changeset_ids(int64 changeset_id);

/* restore_rate.c: the rates of real restores, the estimates of reports */
extern void guard_restore_estimate(GuardRestoreReport *report);
extern void guard_restore_record_rates(List *reports, double fk_seconds);
extern List *guard_restore_changes(List *ids, GuardOnConflict mode,
								   bool dry_run, int64 restore_of,
								   MemoryContext reportcxt,
								   GuardRestoreInspect inspect, void *arg);

/* schema_undo.c: the undo recipes of schema changes */
extern void guard_undo_schema_change(const GuardChange *change, Datum exclude,
									 GuardRestoreReport *report);
extern void guard_undo_truncate_sequences(const GuardChange *change);

/* undo.c: row undo */
extern void guard_undo_rows(const GuardChange *change, GuardOnConflict mode,
							Datum exclude, Datum restoring, bool force,
							GuardRestoreReport *report);
extern void guard_undo_rows_plan(const GuardChange *change,
								 GuardOnConflict mode, Datum exclude,
								 Datum restoring, GuardPlan *plan,
								 GuardRestoreReport *report);

/* undo_judge.c: which change cannot be restored, for messages */
extern void guard_undo_blocked(const GuardChange *change, const char *what,
							   const char *hint) pg_attribute_noreturn();
extern void guard_undo_blocked_error(const GuardChange *change,
									 const char *column) pg_attribute_noreturn();
extern void guard_undo_check_captured(const GuardChange *change);

/* undo_target.c: the table a restore writes to, and how it writes */
extern const char *guard_undo_relname(const GuardChange *change);
extern void guard_undo_check_table(const GuardChange *change, Relation rel);
extern void guard_undo_write_begin(GuardAsRole *as, Relation rel);

/*
 * fkcheck.c: the foreign keys a restore must leave holding.  Row undo
 * describes each batch of rows it writes (an ephemeral relation of its SPI
 * connection: k_N the key, op, v_N / m_N the value of column N and whether
 * it is written back).
 */
typedef struct GuardFkWrite
{
	Relation	rel;			/* the table written */
	const char *enrname;		/* the rows */
	int			nkeys;
	const char *keynames[INDEX_MAX_KEYS];	/* column of k_1.. */
	Oid			keytypes[INDEX_MAX_KEYS];
	int			ncols;
	const char **colnames;		/* column of v_0.. */
} GuardFkWrite;

extern void guard_fk_begin(void);
extern void guard_fk_forget(void);
extern void guard_fk_note_write(const GuardFkWrite *w, bool after);
extern void guard_fk_schema_changed(void);
extern void guard_fk_check(void);

/* later.c: what changes recorded after the one being undone wrote, by key */
#define GUARD_LATER_OTHER	1	/* another change set: a conflict */
#define GUARD_LATER_OWN		2	/* a later change of the same change set */
#define GUARD_LATER_SETTLED	4	/* a restore of an older change of the
									 * same change set */

typedef struct GuardLaterWrites GuardLaterWrites;
typedef struct GuardLaterEntry GuardLaterEntry;
typedef struct GuardLaterProbe GuardLaterProbe;

/* the answer to one question: what later changes wrote, and its data */
typedef void (*GuardLaterVisit) (const GuardLaterEntry *entry,
								 const char *data, Size len, void *arg);

extern Datum guard_related_relids(Oid relid);
extern GuardLaterWrites *guard_later_writes_begin(const GuardChange *change,
												  Datum exclude,
												  Datum restoring);
extern void guard_later_writes_end(GuardLaterWrites *later);
extern GuardLaterProbe *guard_later_probe_begin(GuardLaterWrites *later);
extern void guard_later_probe_add(GuardLaterProbe *probe, const char *key,
								  const void *data, Size len);
typedef void (*GuardLaterKeyVisit) (const char *key,
									const GuardLaterEntry *entry, void *arg);
extern void guard_later_each_key(GuardLaterWrites *later,
								 GuardLaterKeyVisit visit, void *arg);
extern void guard_later_probe_run(GuardLaterProbe *probe,
								  GuardLaterVisit visit, void *arg);
extern int	guard_later_wrote(const GuardLaterEntry *entry, int attno);
extern int	guard_later_how(const GuardLaterEntry *entry);
extern int	guard_later_changesets(const GuardLaterEntry *entry, int64 *ids,
								   int max);

/*
 * progress.c: what each running restore is doing, in shared memory, for
 * guard.restore_progress().  A backend runs one restore at a time; the
 * phase's rows_total is -1 when not known.
 */
typedef enum GuardPhase
{
	GUARD_PHASE_STARTING,		/* locking and reading the change records */
	GUARD_PHASE_READING,		/* reading the change, judging each row */
	GUARD_PHASE_READING_LATER,	/* reading what later changes wrote */
	GUARD_PHASE_CHECKING_LATER, /* checking rows against later writes */
	GUARD_PHASE_CHECKING_MOVES, /* checking the keys of moved rows */
	GUARD_PHASE_WRITING,		/* writing rows back */
	GUARD_PHASE_SCHEMA,			/* undoing a schema change */
	GUARD_PHASE_CHECKING_FKS,	/* checking foreign keys */
	GUARD_PHASE_VERIFYING,		/* the drill: comparing rows */
	GUARD_PHASE_FINISHING,		/* recording the restore */
	GUARD_NPHASES
} GuardPhase;

extern void guard_progress_init(void);
extern void guard_progress_begin(bool dry_run);
extern void guard_progress_change(int64 changeset_id, int64 change_id);
extern void guard_progress_phase(GuardPhase phase, int64 rows_total);
extern void guard_progress_tick(void);
extern void guard_progress_end(void);
extern int64 guard_change_nrows(int64 change_id);

/*
 * The kinds of schema change, each recorded and undone side by side:
 * ddl_alter.c (ALTER TABLE subcommands; and the lookup of every kind) ->
 * ddl_constraint.c, ddl_index.c, ddl_table.c (SET SCHEMA, COMMENT),
 * ddl_column.c ->
 * ddl_objects.c (a table's parts saved as SQL) -> ddl_util.c (records,
 * details, running the undo).  ddl.c and schema_undo.c call them.
 */

/* a schema change being recorded: begun before its command runs */
typedef struct GuardDdlRecord GuardDdlRecord;
typedef bool (*GuardDdlFinish) (GuardDdlRecord *rec, Relation rel);

struct GuardDdlRecord
{
	Oid			relid;
	int64		change_id;		/* reserved when begun, so that change ids
								 * follow the order to undo in */
	const char *kind;
	StringInfoData detail;		/* the JSON object, closed when written */
	bool		recheck;		/* check the table's row invariants after */
	GuardDdlFinish finish;		/* after the command, or NULL: completes the
								 * detail; false when there is nothing to
								 * record after all */
	void	   *arg;
	List	  **shared;			/* what the records of one statement share
								 * (the constraints they claimed) */
};

/* invariants_ddl.c: a RENAME's finish, its row checks still compiling */
extern bool guard_invariants_after_rename(GuardDdlRecord *rec, Relation rel);

/* the live table a schema change undo works on, locked */
typedef struct GuardSchemaTarget
{
	Oid			relid;
	Oid			owner;
	char	   *qualname;
	char	   *relname;
	char	   *nspname;
} GuardSchemaTarget;

/* one kind: what to save before the command, how to undo it */
typedef bool (*GuardKindRecord) (GuardDdlRecord *rec, Relation rel, Node *cmd);
typedef void (*GuardKindUndo) (const GuardChange *change,
							   const GuardSchemaTarget *t,
							   GuardRestoreReport *report);

typedef struct GuardSchemaKind
{
	const char *kind;			/* guard.change.kind; NULL ends a table */
	GuardKindRecord record;
	GuardKindUndo undo;
} GuardSchemaKind;

/* an object saved as the SQL that recreates it */
typedef struct GuardSaved
{
	char	   *object;			/* as pg_describe_object() names it */
	char	   *sql;			/* NULL: guard cannot recreate it */
	bool		as_guard;		/* run as the extension owner, not as the
								 * table's owner (another table's parts) */
	int			order;			/* when saved: 0 for what must exist before
								 * the column's default (its sequence) */
} GuardSaved;

/* ddl_util.c */
extern const GuardPolicy *guard_ddl_policy(Relation rel);
extern Oid	guard_ddl_lookup_owned(const RangeVar *rv, LOCKMODE lockmode);
extern GuardDdlRecord *guard_ddl_record_begin(Relation rel, const char *kind);
extern void guard_ddl_record_write(GuardDdlRecord *rec, Relation rel);
extern char *guard_detail_field(const GuardChange *change, const char *name);
extern List *guard_detail_saved(const GuardChange *change, const char *name);
extern void guard_json_saved(StringInfo buf, const char *name, List *saved);
extern char *guard_catalog_string(const char *sql, int nargs, Oid *types,
								  Datum *values);
extern int	guard_pin_search_path(void);
extern void guard_unpin_search_path(int level);
extern void guard_run_as_owner(Oid owner, const char *sql);
extern void guard_run_saved(const GuardSchemaTarget *t, List *saved,
							GuardRestoreReport *report);
extern void guard_report_object(GuardRestoreReport *report, const char *verb,
								const char *object);
extern void guard_schema_blocked(const GuardChange *change,
								 const char *what) pg_attribute_noreturn();

/* ddl_objects.c */
extern List *guard_dependents(Oid relid, Oid classid, Oid objid,
							  int32 objsubid);
extern char *guard_index_sql(Oid indexoid);
extern char *guard_constraint_sql(Oid conoid);

/* ddl_column.c */
extern void guard_column_save(StringInfo detail, Relation rel,
							  AttrNumber attnum, bool dependents);
extern void guard_column_restore(const GuardChange *change,
								 const GuardSchemaTarget *t,
								 const char *column, bool before_default,
								 GuardRestoreReport *report);
extern void guard_column_report_drops(Oid relid, const char *column,
									  GuardRestoreReport *report);
extern void guard_column_type_check(StringInfo detail, Relation rel,
									AttrNumber attnum, AlterTableCmd *cmd);
extern const char *guard_storage_name(char storage);
extern const char *guard_compression_name(char compression);
extern bool guard_column_type_undo_key(const GuardChange *change,
									   const GuardSchemaTarget *t,
									   const char *column);

/* ddl_index.c */
extern const GuardSchemaKind guard_index_kinds[];
extern void guard_json_partition_indexes(StringInfo detail, Relation rel);
extern void guard_partition_indexes_rename(const GuardSchemaTarget *t,
										   const GuardChange *change);
extern List *guard_index_before_create(IndexStmt *stmt, List *after);
extern List *guard_index_before_drop(DropStmt *stmt, List *after);

/* ddl_constraint.c */
extern const GuardSchemaKind guard_constraint_kinds[];

/* ddl_table.c */
extern const GuardSchemaKind guard_table_kinds[];
extern List *guard_alter_before_schema(AlterObjectSchemaStmt *stmt,
									   List *after);
extern List *guard_alter_before_comment(CommentStmt *stmt, List *after);

/* ddl_alter.c */
extern List *guard_alter_in_pass_order(List *cmds);
extern GuardDdlRecord *guard_alter_record(Relation rel, AlterTableCmd *cmd,
										  List **shared);
extern bool guard_schema_kind_undo(const GuardChange *change,
								   const GuardSchemaTarget *t,
								   GuardRestoreReport *report);

/*
 * Rehearse and read the past (guard.rehearse, guard.as_of, guard.history),
 * from the top down:
 *
 *	rehearse.c	guard.rehearse() -> script, nontxn, locks, changes, policy
 *	script.c	a migration script split into statements; calls no other file
 *	nontxn.c	what PostgreSQL keeps of a rolled-back rehearsal (sequences,
 *				pg_class statistics), put back -> catalog, locks
 *	locks.c		this backend's locks, from pg_locks; calls no other file
 *	history.c	guard.history() -> past, rowfilter, policy
 *	asof.c		guard.as_of() -> past, rowfilter, policy
 *	past_walk.c	a table's changes since a time, newest first -> past,
 *				changes
 *	past.c		rows as they were before those changes -> shadow_read,
 *				changes, rows
 *	rowfilter.c	a row's visibility under row level security; calls no other
 *				file but spi.c
 */

/* script.c: a script split into the statements a tool would send */
typedef enum GuardStmtAction
{
	GUARD_STMT_RUN,				/* run it */
	GUARD_STMT_COMMIT,			/* COMMIT: the would-be commit */
	GUARD_STMT_SKIP				/* report it, do not run it (see why) */
} GuardStmtAction;

typedef struct GuardScriptStmt
{
	int			number;			/* 1-based */
	char	   *text;			/* as sent to the server */
	char	   *shown;			/* without the comments leading it */
	const char *kind;			/* its command tag */
	RangeVar   *rv;				/* the relation it names, or NULL */
	GuardStmtAction action;
	const char *why;			/* why it is not run */
} GuardScriptStmt;

extern List *guard_script_split(const char *sql);
extern char *guard_script_relation(RangeVar *rv);

/* past.c, past_walk.c: a table's rows as they were */
typedef struct GuardPast GuardPast;

/* one version of a row, by attnum of the table now (dropped ones too) */
typedef struct GuardPastVersion
{
	Datum	   *values;
	bool	   *nulls;
	Oid		   *types;			/* the type of each value: a column had
								 * another before an ALTER COLUMN TYPE */
} GuardPastVersion;

/* a column of the table as it was, by attnum of the table now */
typedef struct GuardPastColumn
{
	bool		exists;
	Oid			type;
	const char *name;
	int64		retyped_by;		/* the change set that gave it the type it
								 * has now, or 0 */
} GuardPastColumn;

/* one change being undone */
typedef struct GuardPastChange
{
	int64		change_id;
	int64		changeset_id;
	TimestampTz at;
	char	   *role;
	char	   *label;			/* its change set's */
	char	   *kind;
	char	   *statement;		/* ALTER TABLE only */
	GuardChange *record;		/* its record and layout */
	int		   *map;			/* record attnum - 1 -> table attnum - 1,
								 * or -1 */
	int64		nrows;			/* rows undone so far */
} GuardPastChange;

/* one captured row, undone: the row's versions around the change */
typedef struct GuardPastRow
{
	GuardRowOp	op;
	const ShadowRow *row;		/* as captured, in the record's layout */
	const GuardPastVersion *before; /* NULL: no row before the change */
	const GuardPastVersion *after;	/* NULL: no row after it */
	const Datum *key_before;	/* in the order of the table's key; NULL */
	const Datum *key_after;		/* ... when there is no such row */
} GuardPastRow;

typedef void (*GuardPastOnChange) (void *arg, const GuardPastChange *change);
typedef void (*GuardPastOnRow) (void *arg, const GuardPastChange *change,
								const GuardPastRow *row);
typedef void (*GuardPastOnVersion) (void *arg, const GuardPastVersion *version);

extern GuardPast *guard_past_begin(Relation rel, bool strict);
extern bool guard_past_walk(GuardPast *past, TimestampTz since,
							bool stop_at_expired, GuardPastOnChange on_change,
							GuardPastOnRow on_row, void *arg);
extern const GuardPastColumn *guard_past_columns(GuardPast *past);
extern int	guard_past_key(GuardPast *past, const AttrNumber **keys);
extern void guard_past_rows(GuardPast *past, GuardPastOnVersion emit, void *arg);
extern void guard_past_end(GuardPast *past);

/* rowfilter.c: would row level security show this row to the caller? */
typedef struct GuardRowFilter GuardRowFilter;

extern GuardRowFilter *guard_rowfilter_begin(Relation rel);
extern bool guard_rowfilter_visible(GuardRowFilter *filter,
									const GuardPastVersion *version);
extern void guard_rowfilter_end(GuardRowFilter *filter);

/* locks.c: this backend's locks */
extern List *guard_locks_held(void);
extern List *guard_locks_relids(void);
extern List *guard_locks_on_sequences(MemoryContext cxt);
extern List *guard_locks_taken(List *before, List *after);

/* nontxn.c: state a rollback does not undo, saved before and put back */
typedef struct GuardNonTxn GuardNonTxn;

extern GuardNonTxn *guard_nontxn_save(void);
extern char *guard_nontxn_restore(GuardNonTxn *saved, List *touched);

#endif							/* GUARD_H */

/*-------------------------------------------------------------------------
 *
 * shadow.h
 *	  The encoding of captured rows in snapshot chunks, shared by the
 *	  writer (shadow.c) and the reader (shadow_read.c).
 *
 * A chunk is a bytea of rows, each decodable knowing only the column types
 * and key of the change's layout.  One captured row is encoded as
 *
 *	  flags			1 byte: operation (bits 0-1), HAS_NULLS, NEW_SET
 *	  set			bitmap of the columns whose before-value follows, present
 *					only when it differs from the previous row's (NEW_SET)
 *	  nulls			bitmap of which of those are NULL (HAS_NULLS)
 *	  key			the row's key after the change (UPDATE, INSERT)
 *	  values		the before-values of the set's non-NULL columns
 *	  hash			4 bytes: hash of the after-values of the set's columns
 *					(UPDATE) or of the whole new row (INSERT)
 *
 * The bitmaps have one bit per attnum (bit i for attnum i + 1).  A row's
 * set carries over to the next row of the same chunk unless NEW_SET.  The
 * operation is a GuardRowOp.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SHADOW_H
#define SHADOW_H

#define ROW_OP_MASK		0x03
#define ROW_HAS_NULLS	0x04
#define ROW_NEW_SET		0x08

/* room for one pass-by-value Datum's bytes, aligned for store_att_byval */
typedef union AlignedDatum
{
	Datum		d;
	char		c[sizeof(Datum)];
} AlignedDatum;

/* is bit i of a column bitmap set? */
static inline bool
bit_is_set(const uint8 *map, int i)
{
	return (map[i >> 3] & (1 << (i & 7))) != 0;
}

/* set bit i of a column bitmap */
static inline void
bit_set(uint8 *map, int i)
{
	map[i >> 3] |= (1 << (i & 7));
}

#endif							/* SHADOW_H */

/* util: the bottom; it may mention pool.h in a comment, not include it. */

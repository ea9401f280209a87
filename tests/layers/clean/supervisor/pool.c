#include "pool.h"

#include "queue.h"
#include "text.h"
/*
#include "main.h"   (commented out: not an include)
*/
// #include "main.h"
static const char *s = "/* #include \"main.h\" */";

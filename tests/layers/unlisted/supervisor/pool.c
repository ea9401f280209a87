#include "pool.h"
#include "util.h"

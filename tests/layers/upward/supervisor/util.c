#include "util.h"

#include "pool.h"

#include "extra.h"
#include "pool.h"

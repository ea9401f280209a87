#include "app.h"

#include "pool.h"

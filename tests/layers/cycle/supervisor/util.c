#include "util.h"
#include "text.h"

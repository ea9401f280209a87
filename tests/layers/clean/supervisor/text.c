#include "text.h"

#include <stdio.h>

#include "util.h"

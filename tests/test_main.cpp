#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "process_defaults.h"

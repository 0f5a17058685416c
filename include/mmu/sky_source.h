// Where a cross-match side comes from: a store (optionally one survey of it),
// a folder or file of MMU data, or a survey name inside the default store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/column.h"
#include "mmu/mmu_files.h"  // ObjectIds

namespace mmu {

struct SkySource {
  std::string label;                  // what the user named
  ObjectIds ids;
  Column<double> ra, dec;             // degrees
  std::vector<int64_t> rows;          // store rows; empty unless from a store
  std::string store;                  // the store it came from ("" for MMU files)
  // Object i's survey is survey_names[survey_of[i]]: a few names for millions
  // of objects.
  std::vector<std::string> survey_names;
  Column<uint32_t> survey_of;
  // What was assumed about the files read, each naming its file.
  std::vector<std::string> warnings;

  const std::string& survey(size_t i) const { return survey_names[survey_of[i]]; }
};

// spec: a store folder (has CURRENT), "STORE_FOLDER:SURVEY", an MMU folder or
// file, or a survey name (dataset or dataset/subset) in `store`.
// Throws NotFound naming spec when none of these exists.
SkySource load_sky_source(const std::string& spec, const std::string& store);

// For each left object, the right index of the same object (-1: none): the
// same store row when both sides come from one store, or else the same survey
// name and object id. Ids repeated within one survey of the right side name no
// object, so they are not skipped. Empty when no object is on both sides.
std::vector<int64_t> same_objects(const SkySource& left, const SkySource& right);

}  // namespace mmu

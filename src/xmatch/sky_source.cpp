#include "mmu/sky_source.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <map>

#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/store.h"
#include "store/layout.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

bool is_store(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(layout::current_file(path), ec);
}

SkySource from_store(const std::string& label, const std::string& dir, const std::string& survey) {
  auto store = Store::open(dir);
  SkySource s;
  s.label = label;
  s.store = dir;
  std::map<std::string, uint32_t> number;  // of each survey name
  for (const CatalogRow& r : store->positions(survey)) {
    const auto [it, added] = number.emplace(r.survey, static_cast<uint32_t>(s.survey_names.size()));
    if (added) s.survey_names.push_back(r.survey);
    s.ids.push_back(r.object_id);
    s.survey_of.push_back(it->second);
    s.ra.push_back(r.ra);
    s.dec.push_back(r.dec);
    s.rows.push_back(r.row);
  }
  if (s.ids.empty() && !survey.empty()) {
    std::string names;
    for (const auto& n : store->surveys()) names += (names.empty() ? "" : ", ") + n;
    throw NotFound("survey '" + survey + "' is not in store '" + dir + "' (it has: " + names + ")");
  }
  return s;
}

template <typename T>
void append(std::vector<T>* to, std::vector<T>* from) {
  if (to->empty()) {
    to->swap(*from);
  } else {
    to->insert(to->end(), std::make_move_iterator(from->begin()), std::make_move_iterator(from->end()));
  }
}

}  // namespace

SkySource load_sky_source(const std::string& spec, const std::string& store) {
  if (is_store(spec)) return from_store(spec, spec, "");
  const auto colon = spec.rfind(':');
  if (colon != std::string::npos && is_store(spec.substr(0, colon)))
    return from_store(spec, spec.substr(0, colon), spec.substr(colon + 1));
  std::error_code ec;
  if (fs::exists(spec, ec)) {
    SkySource s;
    s.label = spec;
    for (const SourceFile& f : discover_files({spec})) {
      MmuFileReader reader(f);
      FileCatalog c = reader.read_catalog(/*with_healpix=*/false);
      const auto number = static_cast<uint32_t>(
          std::find(s.survey_names.begin(), s.survey_names.end(), f.dataset) - s.survey_names.begin());
      if (number == s.survey_names.size()) s.survey_names.push_back(f.dataset);
      s.survey_of.insert(s.survey_of.end(), c.ids.size(), number);
      // Moved, not copied: a million ids and positions per file.
      append(&s.ids, &c.ids);
      append(&s.ra, &c.ra);
      append(&s.dec, &c.dec);
    }
    if (s.ids.empty()) throw NotFound("no *.hdf5 or *.h5 files under '" + spec + "'");
    return s;
  }
  if (!is_store(store))
    throw NotFound("'" + spec + "' is neither a file, a folder, nor a survey of a store (no store at '" + store + "')");
  return from_store(spec, store, spec);
}

}  // namespace mmu

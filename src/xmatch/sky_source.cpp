#include "mmu/sky_source.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <map>

#include "base/fresh_buffer.h"
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
  std::vector<std::string> ids;
  for (const CatalogRow& r : store->positions(survey)) {
    const auto [it, added] = number.emplace(r.survey, static_cast<uint32_t>(s.survey_names.size()));
    if (added) s.survey_names.push_back(r.survey);
    ids.push_back(r.object_id);
    s.survey_of.push_back(it->second);
    s.ra.push_back(r.ra);
    s.dec.push_back(r.dec);
    s.rows.push_back(r.row);
  }
  s.ids.append_texts(std::move(ids));
  if (s.ids.size() == 0 && !survey.empty()) {
    std::string names;
    for (const auto& n : store->surveys()) names += (names.empty() ? "" : ", ") + n;
    throw NotFound("survey '" + survey + "' is not in store '" + dir + "' (it has: " + names + ")");
  }
  return s;
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
    SkyColumns columns;
    for (const SourceFile& f : discover_files({spec})) {
      MmuFileReader reader(f);
      // Grown by doubling, each column on huge pages; one file fills its exact size.
      const size_t size = columns.ra.size(), needed = size + static_cast<size_t>(reader.rows());
      const size_t room = needed <= columns.ra.capacity() ? needed : std::max(needed, 2 * columns.ra.capacity());
      reserve_fresh(&columns.ra, room);
      reserve_fresh(&columns.dec, room);
      reserve_fresh(&s.survey_of, room);
      const auto number = static_cast<uint32_t>(
          std::find(s.survey_names.begin(), s.survey_names.end(), f.dataset) - s.survey_names.begin());
      if (number == s.survey_names.size()) s.survey_names.push_back(f.dataset);
      reader.read_sky_columns(&columns);
      // Filled by all threads, each mapping its share's pages (see read_sky_columns).
      const int64_t before = static_cast<int64_t>(s.survey_of.size()), added = static_cast<int64_t>(columns.ra.size()) - before;
      s.survey_of.resize(columns.ra.size());  // unset: filled below
      uint32_t* const fill = s.survey_of.data() + before;
#pragma omp parallel
      {
        populate_share(fill, added);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < added; ++i) fill[i] = number;
      }
    }
    s.ids = std::move(columns.ids);
    s.ra = std::move(columns.ra);
    s.dec = std::move(columns.dec);
    s.warnings = std::move(columns.warnings);
    if (s.ids.size() == 0) throw NotFound("no *.hdf5 or *.h5 files under '" + spec + "'");
    return s;
  }
  if (!is_store(store))
    throw NotFound("'" + spec + "' is neither a file, a folder, nor a survey of a store (no store at '" + store + "')");
  return from_store(spec, store, spec);
}

}  // namespace mmu

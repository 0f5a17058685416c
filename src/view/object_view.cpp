// Objects of a store rendered for display, read from their own MMU files.
#include <cmath>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "mmu/error.h"
#include "mmu/object_view.h"

namespace mmu {

namespace {

using nlohmann::json;

// The HDF5 library is serial and process-wide: one read at a time, whatever the viewer.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

constexpr int64_t kPlaceholderSize = 96;

// A dark grey square crossed in red: what a cutout that cannot be drawn shows.
RgbImage placeholder(int64_t size) {
  RgbImage img;
  img.width = img.height = size;
  img.rgb.assign(static_cast<size_t>(size * size) * 3, 48);
  for (int64_t i = 0; i < size; ++i)
    for (const int64_t x : {i, size - 1 - i}) {
      uint8_t* px = &img.rgb[static_cast<size_t>(i * size + x) * 3];
      px[0] = 200;
      px[1] = px[2] = 40;
    }
  return img;
}

// The catalog's files by path (one generation's: its catalog never changes).
using FileTable = std::unordered_map<std::string, StoredFile>;

// The file of `row` as the catalog recorded it.
const StoredFile& stored_file(const FileTable& files, const CatalogRow& row) {
  const auto it = files.find(row.file);
  if (it == files.end())
    throw InternalError("object " + row.object_id + " names file " + row.file + ", which the catalog does not list");
  return it->second;
}

// "" when the file is as the build saw it, else why it cannot be read.
std::string file_problem(const StoredFile& f, const CatalogRow& row) {
  struct stat st {};
  const std::string whose = " (the source file of object " + row.object_id + " of " + row.survey + ")";
  if (::stat(f.file.path.c_str(), &st) != 0)
    return "cannot read " + f.file.path + whose + ": " + std::strerror(errno) +
           "; it moved or was deleted since the store was built: put it back or rebuild the store (mmu-index build)";
  if (static_cast<int64_t>(st.st_size) != f.file.size || static_cast<int64_t>(st.st_mtime) != f.file.mtime)
    return "file " + f.file.path + whose + " changed since the store was built (size " + std::to_string(st.st_size) +
           " bytes, catalog " + std::to_string(f.file.size) + "; mtime " + std::to_string(st.st_mtime) + ", catalog " +
           std::to_string(f.file.mtime) + "): rebuild the store (mmu-index build) to see it";
  return "";
}

json identity(const CatalogRow& row) {
  return json{{"object_id", row.object_id}, {"survey", row.survey}, {"file", row.file}};
}

std::string dump(const json& j) {
  // replace: ids and paths are user bytes that need not be UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

void need_modality(const StoredFile& f, const CatalogRow& row, Modality m) {
  if (f.modality != modality_name(m))
    throw NotFound("object " + row.object_id + " of " + row.survey + " has no " + modality_name(m) + ": its file " +
                   row.file + " holds " + f.modality);
}

// The catalogue redshift of file row `index`, when the file has a Z / REDSHIFT column.
json redshift(const MmuFileReader& reader, int64_t index) {
  for (const ScalarColumn& c : reader.read_scalar_columns()) {
    std::string lower = c.name;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower != "z" && lower != "redshift") continue;
    if (!c.present[static_cast<size_t>(index)]) return nullptr;
    if (c.type == ScalarColumn::Type::kReal) return c.reals[static_cast<size_t>(index)];
    if (c.type == ScalarColumn::Type::kInteger) return c.integers[static_cast<size_t>(index)];
  }
  return nullptr;
}

}  // namespace

CatalogRow find_object(const Store& store, const std::string& survey, const std::string& object_id) {
  std::vector<CatalogRow> found;
  for (CatalogRow& r : store.find_by_id(object_id))
    if (survey.empty() || r.survey == survey) found.push_back(std::move(r));
  if (found.empty())
    throw NotFound("no object '" + object_id + "'" + (survey.empty() ? "" : " of survey '" + survey + "'") +
                   " in the store");
  if (found.size() > 1)
    throw InvalidArgument("object id '" + object_id + "' exists in " + std::to_string(found.size()) +
                          " places" + (survey.empty() ? ": name its survey" : " of one survey"));
  return found.front();
}

struct ObjectViewer::Rep {
  // Each generation's file table, read once: Store::files() scans the
  // catalog's objects (~1 ms on the demo store), more than drawing a cutout.
  static constexpr size_t kGenerations = 4;  // serve follows commits: old ones may still be answering
  std::mutex files_mutex;
  std::list<std::pair<std::string, std::shared_ptr<const FileTable>>> file_tables;  // most recent first

  std::shared_ptr<const FileTable> files(const Store& store) {
    std::lock_guard<std::mutex> lock(files_mutex);
    for (auto it = file_tables.begin(); it != file_tables.end(); ++it)
      if (it->first == store.generation_path()) {
        file_tables.splice(file_tables.begin(), file_tables, it);
        return file_tables.front().second;
      }
    auto table = std::make_shared<FileTable>();
    for (StoredFile& f : store.files()) table->emplace(f.file.path, std::move(f));
    file_tables.emplace_front(store.generation_path(), table);
    if (file_tables.size() > kGenerations) file_tables.pop_back();
    return table;
  }

  // Open readers of the files last drawn from (opening and validating a file
  // costs more than reading one cutout). Guarded by hdf5_mutex(); keyed by
  // path, size and mtime, so a file that changed is opened afresh. 32: a page's
  // grid spans the demo's 20 image and 22 spectrum files; each open file keeps
  // at most HDF5's 1 MB chunk cache per dataset read.
  static constexpr size_t kOpenReaders = 32;
  std::list<std::pair<std::string, std::unique_ptr<MmuFileReader>>> readers;  // most recent first

  // REQUIRES: hdf5_mutex() held.
  const MmuFileReader& reader(const StoredFile& f) {
    const std::string key = f.file.path + '\n' + std::to_string(f.file.size) + '\n' + std::to_string(f.file.mtime);
    for (auto it = readers.begin(); it != readers.end(); ++it)
      if (it->first == key) {
        readers.splice(readers.begin(), readers, it);
        return *readers.front().second;
      }
    readers.emplace_front(key, std::make_unique<MmuFileReader>(f.file));
    if (readers.size() > kOpenReaders) readers.pop_back();
    return *readers.front().second;
  }

  size_t cache_limit;
  mutable std::mutex mutex;  // guards the cache
  std::list<std::pair<std::string, CutoutPng>> lru;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, CutoutPng>>::iterator> index;
  size_t bytes = 0;

  void remember(const std::string& key, const CutoutPng& c) {
    std::lock_guard<std::mutex> lock(mutex);
    if (index.count(key) || c.png.size() > cache_limit) return;
    lru.emplace_front(key, c);
    index[key] = lru.begin();
    bytes += c.png.size();
    while (bytes > cache_limit) {
      bytes -= lru.back().second.png.size();
      index.erase(lru.back().first);
      lru.pop_back();
    }
  }
  bool recall(const std::string& key, CutoutPng* out) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = index.find(key);
    if (it == index.end()) return false;
    lru.splice(lru.begin(), lru, it->second);
    *out = it->second->second;
    return true;
  }
};

ObjectViewer::ObjectViewer(size_t cache_bytes) : rep_(new Rep) { rep_->cache_limit = cache_bytes; }
ObjectViewer::~ObjectViewer() = default;

size_t ObjectViewer::cached_bytes() const {
  std::lock_guard<std::mutex> lock(rep_->mutex);
  return rep_->bytes;
}

CutoutPng ObjectViewer::cutout(const Store& store, const CatalogRow& row, int64_t size) {
  return cutouts(store, {row}, size).front();
}

std::vector<CutoutPng> ObjectViewer::cutouts(const Store& store, const std::vector<CatalogRow>& rows, int64_t size) {
  if (size != 0 && (size < 16 || size > 1024))
    throw InvalidArgument("size must be from 16 to 1024 pixels, got " + std::to_string(size));
  const auto files = rep_->files(store);
  std::vector<CutoutPng> out(rows.size());
  auto placeholder_for = [&](size_t i, const std::string& note) {
    out[i].note = note;  // not cached: the file may come back
    out[i].png = encode_png(placeholder(size == 0 ? kPlaceholderSize : size));
  };
  auto key_of = [&](const CatalogRow& row) {
    return store.generation_path() + '\n' + std::to_string(row.row) + '\n' + std::to_string(size);
  };
  // What the cache lacks, by file.
  std::map<std::string, std::vector<size_t>> missing;
  for (size_t i = 0; i < rows.size(); ++i) {
    const CatalogRow& row = rows[i];
    const StoredFile& f = stored_file(*files, row);
    std::string note = file_problem(f, row);
    if (note.empty() && f.modality != modality_name(Modality::kImage))
      note = "object " + row.object_id + " of " + row.survey + " has no image: its file " + row.file + " holds " +
             f.modality;
    if (!note.empty()) placeholder_for(i, note);
    else if (!rep_->recall(key_of(row), &out[i])) missing[row.file].push_back(i);
  }
  // A run: objects of one file whose rows are at most one apart, read at once (bounded: 16 objects of the
  // demo's 4 x 160 x 160 floats are 13 MB with their masks).
  constexpr int64_t kRunObjects = 16;
  for (auto& [path, wanted] : missing) {
    const StoredFile& f = files->at(path);
    std::sort(wanted.begin(), wanted.end(),
              [&](size_t a, size_t b) { return rows[a].index_in_file < rows[b].index_in_file; });
    for (size_t first = 0; first < wanted.size();) {
      const int64_t start = rows[wanted[first]].index_in_file;
      size_t last = first;
      while (last + 1 < wanted.size() && rows[wanted[last + 1]].index_in_file <= rows[wanted[last]].index_in_file + 1 &&
             rows[wanted[last + 1]].index_in_file - start < kRunObjects)
        ++last;
      const int64_t count = rows[wanted[last]].index_in_file - start + 1;
      ImageBatch batch;
      std::string problem;
      try {
        std::lock_guard<std::mutex> lock(hdf5_mutex());
        rep_->reader(f).read_images(start, count, &batch);
      } catch (const Error& e) {  // a file that changed in place without its size or mtime: still a placeholder
        problem = e.what();
      }
      for (size_t k = first; k <= last; ++k) {
        const size_t i = wanted[k];
        if (!problem.empty()) {
          placeholder_for(i, problem);
          continue;
        }
        try {
          const ColourBands bands = choose_colour_bands(batch.band_names, batch.bands);
          out[i].png = encode_png(lupton_cutout(batch, rows[i].index_in_file - start, bands, size));
          out[i].bands = bands.description;
        } catch (const Error& e) {  // e.g. an image of no bands
          placeholder_for(i, e.what());
          continue;
        }
        rep_->remember(key_of(rows[i]), out[i]);
      }
      first = last + 1;
    }
  }
  return out;
}

std::string ObjectViewer::spectrum_json(const Store& store, const CatalogRow& row, int64_t points) {
  const auto files = rep_->files(store);
  const StoredFile& f = stored_file(*files, row);
  need_modality(f, row, Modality::kSpectrum);
  json j = identity(row);
  j["note"] = file_problem(f, row);
  if (!j["note"].get<std::string>().empty()) return dump(j);
  SpectrumBatch s;
  json z;
  try {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    const MmuFileReader& reader = rep_->reader(f);
    reader.read_spectra(row.index_in_file, 1, &s);
    z = redshift(reader, row.index_in_file);
  } catch (const Error& e) {
    j["note"] = e.what();
    return dump(j);
  }
  const int64_t n = static_cast<int64_t>(s.flux.size());
  const int64_t bins = points > 0 ? std::min(points, n) : n;
  std::vector<double> wavelength(bins), flux(bins);
  std::vector<int> mask(bins);
  for (int64_t k = 0; k < bins; ++k) {
    const int64_t a = k * n / bins, b = (k + 1) * n / bins;
    double lam = 0, sum = 0;
    int64_t used = 0;
    for (int64_t i = a; i < b; ++i) {
      lam += s.lambda[i];
      if (s.good[i] && std::isfinite(s.flux[i])) {
        sum += s.flux[i];
        ++used;
      }
    }
    wavelength[k] = lam / static_cast<double>(b - a);
    flux[k] = used ? sum / static_cast<double>(used) : (b - a == 1 ? s.flux[a] : 0.0);
    mask[k] = used ? 0 : 1;
  }
  if (bins == n) {  // unbinned: the file's own float values and the reader's mask
    for (int64_t i = 0; i < n; ++i) mask[i] = s.good[i] ? 0 : 1;
    j["wavelength"] = s.lambda;
    j["flux"] = s.flux;
  } else {
    j["wavelength"] = wavelength;
    j["flux"] = flux;
  }
  j["mask"] = mask;
  j["redshift"] = z;
  return dump(j);
}

std::string ObjectViewer::light_curve_json(const Store& store, const CatalogRow& row) {
  const auto files = rep_->files(store);
  const StoredFile& f = stored_file(*files, row);
  need_modality(f, row, Modality::kLightCurve);
  json j = identity(row);
  j["note"] = file_problem(f, row);
  if (!j["note"].get<std::string>().empty()) return dump(j);
  LightCurveBatch lc;
  std::vector<std::string> names;
  try {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    const MmuFileReader& reader = rep_->reader(f);
    reader.read_light_curves(row.index_in_file, 1, &lc);
    try {
      names = reader.light_curve_band_names(row.index_in_file);
    } catch (const Error& e) {  // the curve is still drawn, its bands numbered
      j["band_note"] = e.what();
    }
  } catch (const Error& e) {
    j["note"] = e.what();
    return dump(j);
  }
  json bands = json::array();
  for (int64_t b = 0; b < lc.bands; ++b) {
    json t = json::array(), v = json::array(), e = json::array();
    for (int64_t i = 0; i < lc.length; ++i) {
      const size_t at = static_cast<size_t>(b * lc.length + i);
      if (!lc.good[at]) continue;
      t.push_back(lc.time[at]);
      v.push_back(lc.value[at]);
      e.push_back(lc.error[at]);
    }
    const json name = b < static_cast<int64_t>(names.size()) ? json(names[static_cast<size_t>(b)]) : json(nullptr);
    bands.push_back(json{{"band", b}, {"name", name}, {"time", t}, {"value", v}, {"error", e}});
  }
  j["magnitudes"] = lc.magnitudes;
  j["bands"] = bands;
  return dump(j);
}

std::string ObjectViewer::object_json(const Store& store, const CatalogRow& row) {
  const auto files = rep_->files(store);
  auto modality_of = [&](const CatalogRow& r) {
    const auto it = files->find(r.file);
    return it == files->end() ? std::string("none") : it->second.modality;
  };
  json j{{"object_id", row.object_id}, {"survey", row.survey}, {"subset", row.subset}, {"ra", row.ra},
         {"dec", row.dec}, {"modality", modality_of(row)}, {"note", file_problem(stored_file(*files, row), row)}};
  json linked = json::array();
  const std::vector<int64_t> rows = store.linked_rows(row.row);
  for (const CatalogRow& r : store.rows(rows))
    linked.push_back(json{{"object_id", r.object_id}, {"survey", r.survey}, {"modality", modality_of(r)}});
  j["linked"] = linked;
  return dump(j);
}

}  // namespace mmu

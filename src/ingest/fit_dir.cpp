#include "ingest/fit_dir.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/sha256.h"
#include "mmu/error.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mmu {

const FitSpace* FitManifest::find(const std::string& space) const {
  for (const FitSpace& s : spaces)
    if (s.name == space) return &s;
  return nullptr;
}

std::string FitManifest::space_names() const {
  std::string out;
  for (const FitSpace& s : spaces) out += (out.empty() ? "" : ", ") + s.name;
  return out.empty() ? "none" : out;
}

std::string fit_blob_path(const std::string& dir, const std::string& space) {
  return (fs::path(dir) / space / "fit.bin").string();
}

void write_fit_dir(const FitManifest& m, const std::map<std::string, std::string>& blobs) {
  const fs::path dir = fs::absolute(m.dir).lexically_normal();
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::exists(dir / kFitManifestFile, ec) && !fs::is_empty(dir, ec))
    throw InvalidArgument("--out '" + m.dir + "' exists and is not a fit folder (no " + kFitManifestFile +
                          "): not replaced");
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  try {
    json spaces = json::array();
    for (const FitSpace& s : m.spaces) {
      files::make_dirs((tmp / s.name).string());
      files::write_atomic(fit_blob_path(tmp.string(), s.name), blobs.at(s.name));
      spaces.push_back(json{{"name", s.name}, {"modality", s.modality}, {"model", "baseline-pca"},
                            {"version", s.version}, {"input_dim", s.input_dim}, {"dim", s.dim},
                            {"objects", s.objects}, {"cells", s.cells}, {"cells_available", s.cells_available},
                            {"files", s.files}, {"sha256", s.sha256}});
    }
    const json j{{"format", kFitFormat}, {"created", m.created},   {"sample_cells", m.sample_cells},
                 {"seed", m.seed},       {"dim", m.dim},           {"roots", m.roots},
                 {"spaces", spaces}};
    files::write_atomic((tmp / kFitManifestFile).string(), j.dump(2) + "\n");
    const fs::path old = dir.string() + ".old-" + std::to_string(::getpid());
    if (fs::exists(dir, ec)) fs::rename(dir, old);
    fs::rename(tmp, dir);
    fs::remove_all(old, ec);
    files::fsync_path(dir.parent_path().string());
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw IoError(m.dir, "write the fit folder", e.code().value());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

FitManifest read_fit_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kFitManifestFile).string();
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw NotFound("--fit '" + dir + "' is not a fit folder: no " + kFitManifestFile + " (made by `mmu-index fit`)");
  FitManifest m;
  m.dir = dir;
  try {
    const json j = json::parse(files::read_all(path));
    if (j.at("format").get<std::string>() != kFitFormat)
      throw FormatError("'" + path + "' has format '" + j.at("format").get<std::string>() + "', this mmu-index reads '" +
                        kFitFormat + "'");
    m.created = j.at("created").get<std::string>();
    m.sample_cells = j.at("sample_cells").get<int64_t>();
    m.seed = j.at("seed").get<uint64_t>();
    m.dim = j.at("dim").get<int64_t>();
    m.roots = j.at("roots").get<std::vector<std::string>>();
    for (const json& s : j.at("spaces")) {
      FitSpace f;
      f.name = s.at("name").get<std::string>();
      f.modality = s.at("modality").get<std::string>();
      f.version = s.at("version").get<std::string>();
      f.input_dim = s.at("input_dim").get<int64_t>();
      f.dim = s.at("dim").get<int64_t>();
      f.objects = s.at("objects").get<int64_t>();
      f.cells = s.at("cells").get<std::vector<int64_t>>();
      f.cells_available = s.at("cells_available").get<int64_t>();
      f.files = s.at("files").get<std::vector<std::string>>();
      f.sha256 = s.at("sha256").get<std::string>();
      if (f.name.empty() || f.name.find('/') != std::string::npos || f.name[0] == '.')
        throw FormatError("'" + path + "' names a space '" + f.name + "', which is not a space name");
      m.spaces.push_back(std::move(f));
    }
  } catch (const json::exception& e) {
    throw FormatError("'" + path + "' is not a valid fit manifest: " + e.what());
  }
  return m;
}

std::string read_fit_blob(const FitManifest& m, const FitSpace& s) {
  const std::string path = fit_blob_path(m.dir, s.name);
  std::string blob = files::read_all(path);
  const std::string sha = sha256_hex(blob);
  if (sha != s.sha256)
    throw FormatError("'" + path + "' has SHA-256 " + sha + " but " + kFitManifestFile + " of '" + m.dir + "' records " +
                      s.sha256 + ": the fit folder was changed or damaged; rerun `mmu-index fit`");
  return blob;
}

}  // namespace mmu

// `mmu-index train`: pairs from the store's links, inputs through the named
// transforms, the split by HEALPix cell, the output folder and the model cards.
// The training itself runs in the LibTorch plug-in (plugin/torch_train.cpp).
#include "mmu/train.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "mmu/error.h"
#include "mmu/model_package.h"
#include "mmu/store.h"
#include "encode/model_plugin.h"
#include "base/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmu {

namespace {

constexpr const char* kTrainFormat = "mmu-train/1";
constexpr int64_t kMinHeldOut = 10;
constexpr int64_t kReadBatch = 256;

struct Pair {
  CatalogRow image, spectrum;
};

void check_options(const TrainOptions& o) {
  if (o.pairs != "image:spectrum")
    throw InvalidArgument("--pairs '" + o.pairs + "': only image:spectrum pairs can be trained (an image tower and a "
                          "spectrum tower)");
  if (o.out.empty()) throw InvalidArgument("--out is required: the folder the two model packages are written to");
  if (o.epochs < 1) throw InvalidArgument("--epochs must be at least 1");
  if (o.batch_size < 2) throw InvalidArgument("--batch-size must be at least 2 (InfoNCE contrasts pairs within a batch)");
  if (o.embed_dim < 2) throw InvalidArgument("--embed-dim must be at least 2");
  if (!(o.lr > 0)) throw InvalidArgument("--lr must be positive");
  if (!(o.logit_scale > 0)) throw InvalidArgument("--logit-scale must be positive");
  if (!(o.val_fraction > 0 && o.val_fraction < 1)) throw InvalidArgument("--val-fraction must be between 0 and 1");
  if (o.patience < 1) throw InvalidArgument("--patience must be at least 1");
  if (o.image_crop < 16) throw InvalidArgument("--image-crop must be at least 16 pixels");
}

// The options a resumed run must share with the run it continues, by flag.
json config_of(const TrainOptions& o, int64_t pairs) {
  return {{"--store", fs::absolute(o.store).lexically_normal().string()}, {"--pairs", o.pairs}, {"--name", o.name},
          {"--version", o.version}, {"--epochs", o.epochs}, {"--batch-size", o.batch_size},
          {"--embed-dim", o.embed_dim}, {"--seed", o.seed}, {"--lr", o.lr}, {"--weight-decay", o.weight_decay},
          {"--logit-scale", o.logit_scale}, {"--val-fraction", o.val_fraction}, {"--patience", o.patience},
          {"--image-crop", o.image_crop}, {"pairs", pairs}};
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return json();
  }
}

// Refuses an --out that holds anything but our own training, before anything is written.
void check_out(const TrainOptions& o) {
  std::error_code ec;
  if (!fs::exists(o.out, ec)) return;
  if (!fs::is_directory(o.out, ec)) throw InvalidArgument("--out '" + o.out + "' exists and is not a folder; nothing was written");
  if (fs::directory_iterator(o.out, ec) == fs::directory_iterator()) return;
  const json marker = read_json((fs::path(o.out) / "train.json").string());
  if (!marker.is_object() || marker.value("format", "") != kTrainFormat)
    throw InvalidArgument("--out '" + o.out + "' is not empty and holds no training of mmu-index train (no " +
                          kTrainFormat + " train.json); nothing was written: choose a new or empty folder");
  if (!o.resume)
    throw InvalidArgument("--out '" + o.out + "' already holds a training: pass --resume to continue it, or choose "
                          "another folder");
}

// Every image object with a linked spectrum (its nearest linked one), in row order.
std::vector<Pair> linked_pairs(const Store& store) {
  const std::vector<StoredFile> files = store.files();
  std::map<int64_t, const StoredFile*> by_first_row;
  std::set<std::string> modalities;
  for (const StoredFile& f : files) {
    by_first_row[f.first_row] = &f;
    modalities.insert(f.modality);
  }
  for (const char* need : {"image", "spectrum"})
    if (!modalities.count(need)) {
      std::string have;
      for (const auto& m : modalities) have += (have.empty() ? "" : ", ") + m;
      throw InvalidArgument("--pairs image:spectrum: store '" + store.path() + "' holds no " + need +
                            " objects (its files hold: " + have + ")");
    }
  auto modality_of_row = [&](int64_t row) {
    auto it = by_first_row.upper_bound(row);
    return std::prev(it)->second->modality;
  };
  std::vector<int64_t> image_rows, spectrum_rows;
  for (const StoredFile& f : files) {
    if (f.modality != "image") continue;
    for (int64_t r = f.first_row; r < f.first_row + f.n_objects; ++r)
      for (int64_t linked : store.linked_rows(r))
        if (modality_of_row(linked) == "spectrum") {
          image_rows.push_back(r);
          spectrum_rows.push_back(linked);
          break;
        }
  }
  if (image_rows.empty())
    throw InvalidArgument("store '" + store.path() + "' has no linked image-spectrum pairs: cross-match them first, "
                          "e.g. mmu-index xmatch --store " + store.path() + " --left legacysurvey --right desi --link");
  const auto images = store.rows(image_rows), spectra = store.rows(spectrum_rows);
  std::vector<Pair> pairs;
  for (size_t i = 0; i < images.size(); ++i) pairs.push_back({images[i], spectra[i]});
  return pairs;
}

// Held-out cells drawn in a seeded order until val_fraction of the pairs is
// held out: a cell's objects are all on one side, so no sky region leaks.
std::vector<uint8_t> split_by_cell(const std::vector<Pair>& pairs, const TrainOptions& o, std::vector<int64_t>* held_cells) {
  std::map<int64_t, int64_t> per_cell;
  for (const Pair& p : pairs) ++per_cell[p.image.healpix];
  std::vector<int64_t> cells;
  for (const auto& [c, n] : per_cell) cells.push_back(c);
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
  std::shuffle(cells.begin(), cells.end(), rng);
  std::set<int64_t> held;
  int64_t n_held = 0;
  const double want = o.val_fraction * static_cast<double>(pairs.size());
  for (size_t i = 0; i + 1 < cells.size() && n_held < want; ++i) {
    held.insert(cells[i]);
    n_held += per_cell[cells[i]];
  }
  const int64_t n_train = static_cast<int64_t>(pairs.size()) - n_held;
  if (n_held < kMinHeldOut || n_train < o.batch_size)
    throw InvalidArgument("too few pairs for a validation split: " + std::to_string(pairs.size()) + " linked pairs in " +
                          std::to_string(cells.size()) + " HEALPix cells give " + std::to_string(n_train) +
                          " training and " + std::to_string(n_held) + " held-out pairs (need at least --batch-size " +
                          std::to_string(o.batch_size) + " to train and " + std::to_string(kMinHeldOut) +
                          " held out; change --val-fraction or --batch-size, or cross-match more objects)");
  held_cells->assign(held.begin(), held.end());
  std::vector<uint8_t> out;
  for (const Pair& p : pairs) out.push_back(held.count(p.image.healpix) ? 1 : 0);
  return out;
}

// The cards' preprocessing, without a model file yet.
ModelCard tower_card(const TrainOptions& o, const std::string& modality) {
  ModelCard c;
  c.modality = modality;
  c.name = o.name + "-" + modality;
  c.version = o.version;
  c.output_dim = o.embed_dim;
  c.l2_normalized = true;
  if (modality == "image") {
    c.transform = "astroclip-image";
    c.astroclip.crop = o.image_crop;
    c.input_shape = {3, o.image_crop, o.image_crop};
  } else {
    c.transform = "specformer-spectrum";
  }
  return c;
}

// Runs the card's transform on the objects of `objects` (pair order) into *out.
void read_inputs(const std::vector<CatalogRow>& objects, ModelCard* card, std::vector<float>* out) {
  std::map<std::string, std::vector<size_t>> by_file;
  for (size_t i = 0; i < objects.size(); ++i) by_file[objects[i].file].push_back(i);
  std::vector<float> batch;
  for (const auto& [path, which] : by_file) {
    SourceFile f;
    f.path = path;
    MmuFileReader reader(f);
    if (card->modality == "spectrum") {
      const int64_t tokens = specformer_tokens(reader.spectrum_length(), card->specformer);
      if (card->input_shape.empty()) card->input_shape = {tokens, card->specformer.section + 2};
      if (tokens != card->input_shape[0])
        throw FormatError("'" + path + "' has spectra of length " + std::to_string(reader.spectrum_length()) +
                          ", other paired spectra another length: one spectrum tower takes one length");
    }
    if (out->empty()) out->resize(objects.size() * static_cast<size_t>(card->input_size()));
    const int64_t per = card->input_size();
    std::map<int64_t, std::vector<size_t>> by_row;  // file row -> pair indices
    for (size_t i : which) by_row[objects[i].index_in_file].push_back(i);
    for (int64_t start = 0; start < reader.rows(); start += kReadBatch) {
      auto first = by_row.lower_bound(start), last = by_row.lower_bound(start + kReadBatch);
      if (first == last) continue;
      const int64_t count = std::min(kReadBatch, reader.rows() - start);
      ImageBatch images;
      SpectrumBatch spectra;
      if (card->modality == "image") {
        reader.read_images(start, count, &images);
        prepare_model_inputs(*card, &images, nullptr, &batch);
      } else {
        reader.read_spectra(start, count, &spectra);
        prepare_model_inputs(*card, nullptr, &spectra, &batch);
      }
      for (auto it = first; it != last; ++it)
        for (size_t i : it->second)
          std::copy_n(batch.data() + (it->first - start) * per, per, out->data() + i * per);
    }
  }
}

void write_json(const std::string& path, const json& j) {
  std::ofstream(path + ".tmp") << j.dump(2) << "\n";
  fs::rename(path + ".tmp", path);
}

json card_json(const ModelCard& c, const TrainOptions& o, const std::string& sha, const std::string& shared_space,
               const std::string& partner) {
  json params = json::object();
  if (c.transform == "astroclip-image") params["crop"] = c.astroclip.crop;
  return {{"format", "mmu-model/1"},
          {"name", c.name},
          {"version", c.version},
          {"modality", c.modality},
          {"file", "model.pt"},
          {"sha256", sha},
          {"input", {{"shape", c.input_shape}}},
          {"preprocessing", {{"name", c.transform}, {"params", params}}},
          {"output", {{"dim", c.output_dim}, {"l2_normalized", true}}},
          {"shared_space", {{"id", shared_space}, {"partner", partner}}},
          {"license", "as the training data"},
          {"citation", "trained with mmu-index train (symmetric InfoNCE, logit scale " + std::to_string(o.logit_scale) +
                           ", after AstroCLIP, Parker et al. 2024)"}};
}

}  // namespace

std::string format_epoch(const EpochStats& s, int64_t epochs, int64_t val_pairs) {
  char line[320];
  std::snprintf(line, sizeof(line),
                "epoch %lld/%lld: train loss %.4f, val loss %.4f, val top-1 %.3f top-10 %.3f (chance %.3f/%.3f), "
                "%.0f examples/s",
                static_cast<long long>(s.epoch), static_cast<long long>(epochs), s.train_loss, s.val_loss, s.val_top1,
                s.val_top10, 1.0 / static_cast<double>(val_pairs),
                std::min(1.0, 10.0 / static_cast<double>(val_pairs)), s.examples_per_s);
  return line;
}

TrainReport train_model(const TrainOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  check_options(o);
  check_out(o);
  auto store = Store::open(o.store);
  const std::vector<Pair> pairs = linked_pairs(*store);
  TrainReport report;
  const std::vector<uint8_t> held_out = split_by_cell(pairs, o, &report.val_cells);
  report.val_pairs = std::count(held_out.begin(), held_out.end(), 1);
  report.train_pairs = static_cast<int64_t>(pairs.size()) - report.val_pairs;

  const fs::path out(o.out);
  const std::string marker = (out / "train.json").string();
  const json config = config_of(o, static_cast<int64_t>(pairs.size()));
  if (o.resume && fs::exists(marker)) {
    const json before = read_json(marker).value("config", json::object());
    for (const auto& [key, value] : config.items())
      if (before.value(key, json()) != value)
        throw InvalidArgument("--resume: " + key + " is " + value.dump() + " now but " + before.value(key, json()).dump() +
                              " in the training in '" + o.out + "' (resume with the same options)");
  }

  TrainInputs in;
  in.held_out = held_out;
  ModelCard image_card = tower_card(o, "image"), spectrum_card = tower_card(o, "spectrum");
  std::vector<CatalogRow> images, spectra;
  for (const Pair& p : pairs) {
    images.push_back(p.image);
    spectra.push_back(p.spectrum);
  }
  log("reading " + std::to_string(pairs.size()) + " pairs (" + std::to_string(report.train_pairs) + " training, " +
      std::to_string(report.val_pairs) + " held out in " + std::to_string(report.val_cells.size()) + " HEALPix cells)");
  read_inputs(images, &image_card, &in.images);
  read_inputs(spectra, &spectrum_card, &in.spectra);
  in.image_shape = image_card.input_shape;
  in.spectrum_shape = spectrum_card.input_shape;

  fs::create_directories(out / "image");
  fs::create_directories(out / "spectrum");
  json state = {{"format", kTrainFormat}, {"config", config}, {"finished", false}};
  write_json(marker, state);

  TrainRun run;
  run.options = &o;
  run.inputs = &in;
  run.image_model = (out / "image" / "model.pt").string();
  run.spectrum_model = (out / "spectrum" / "model.pt").string();
  run.checkpoint_dir = (out / "checkpoint").string();
  run.on_epoch = [&](const EpochStats& s) { log(format_epoch(s, o.epochs, report.val_pairs)); };
  const auto train = reinterpret_cast<void (*)(TrainRun&)>(model_plugin_symbol("mmu_train_towers"));
  train(run);
  report.history = run.history;
  report.best_epoch = run.best_epoch;

  // Both cards name one shared space, tied to these two exact files.
  const std::string image_sha = sha256_file(run.image_model), spectrum_sha = sha256_file(run.spectrum_model);
  report.shared_space = o.name + "@" + o.version + ":" + sha256_hex(image_sha + spectrum_sha).substr(0, 16);
  write_json((out / "image" / "model.json").string(),
             card_json(image_card, o, image_sha, report.shared_space, spectrum_card.space_name()));
  write_json((out / "spectrum" / "model.json").string(),
             card_json(spectrum_card, o, spectrum_sha, report.shared_space, image_card.space_name()));
  json history = json::array();
  for (const auto& s : report.history)
    history.push_back({{"epoch", s.epoch}, {"train_loss", s.train_loss}, {"val_loss", s.val_loss},
                       {"val_top1", s.val_top1}, {"val_top10", s.val_top10}, {"examples_per_s", s.examples_per_s}});
  state["finished"] = true;
  state["best_epoch"] = report.best_epoch;
  state["shared_space"] = report.shared_space;
  state["train_pairs"] = report.train_pairs;
  state["val_pairs"] = report.val_pairs;
  state["val_cells"] = report.val_cells;  // so evaluations can use the objects training never saw
  state["history"] = history;
  write_json(marker, state);
  report.image_package = (out / "image").string();
  report.spectrum_package = (out / "spectrum").string();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace mmu

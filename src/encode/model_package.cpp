#include "mmu/model_package.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmu/error.h"
#include "base/sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmu {

namespace {

template <typename T>
T field(const json& j, const std::string& key, const std::string& where) {
  if (!j.contains(key)) throw FormatError(where + ": missing field '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw FormatError(where + ": field '" + key + "' has the wrong type");
  }
}

double param(const json& params, const std::string& key, double fallback, const std::string& where) {
  if (!params.contains(key)) return fallback;
  if (!params.at(key).is_number()) throw FormatError(where + ": preprocessing parameter '" + key + "' is not a number");
  return params.at(key).get<double>();
}

std::vector<int64_t> expected_shape(const ModelCard& c) {
  if (c.transform == "astroclip-image") return {3, c.astroclip.crop, c.astroclip.crop};
  if (c.transform == "aion-image") return {4, c.aion.crop, c.aion.crop};
  return {};  // specformer: depends on the spectrum length; checked per file
}

}  // namespace

ModelCard load_model_card(const std::string& dir) {
  const std::string card_path = (fs::path(dir) / "model.json").string();
  const std::string where = "model package '" + dir + "'";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw NotFound(where + " does not exist (a folder with model.json and the model file)");
  if (!fs::exists(card_path, ec)) throw NotFound(where + " has no model card model.json");
  json j;
  try {
    std::ifstream in(card_path);
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError("model card '" + card_path + "' is not valid JSON: " + e.what());
  }
  const std::string w = "model card '" + card_path + "'";
  ModelCard c;
  c.dir = dir;
  if (field<std::string>(j, "format", w) != "mmu-model/1")
    throw FormatError(w + ": format '" + j["format"].get<std::string>() + "' is not mmu-model/1");
  c.name = field<std::string>(j, "name", w);
  c.version = field<std::string>(j, "version", w);
  for (const std::string* s : {&c.name, &c.version})
    if (s->empty() || s->find_first_of("/\\@ \t\n") != std::string::npos)
      throw FormatError(w + ": name and version must be non-empty, without spaces, '/' or '@'");
  c.modality = field<std::string>(j, "modality", w);
  if (c.modality != "image" && c.modality != "spectrum")
    throw FormatError(w + ": modality '" + c.modality + "' is not image or spectrum");
  c.file = field<std::string>(j, "file", w);
  c.sha256 = field<std::string>(j, "sha256", w);
  c.license = j.value("license", "");
  c.citation = j.value("citation", "");
  const json input = field<json>(j, "input", w);
  c.input_shape = field<std::vector<int64_t>>(input, "shape", w + " input");
  for (int64_t v : c.input_shape)
    if (v <= 0) throw FormatError(w + ": input.shape has a non-positive size");
  const json pre = field<json>(j, "preprocessing", w);
  c.transform = field<std::string>(pre, "name", w + " preprocessing");
  const json params = pre.value("params", json::object());
  const std::string pw = w + " preprocessing";
  if (c.transform == "astroclip-image") {
    c.astroclip.crop = static_cast<int64_t>(param(params, "crop", 144, pw));
    c.astroclip.q = param(params, "Q", 20, pw);
    c.astroclip.m = param(params, "m", 0.03, pw);
    c.astroclip.scale_g = param(params, "scale_g", 6.0, pw);
    c.astroclip.scale_r = param(params, "scale_r", 3.4, pw);
    c.astroclip.scale_z = param(params, "scale_z", 2.2, pw);
  } else if (c.transform == "specformer-spectrum") {
    c.specformer.section = static_cast<int64_t>(param(params, "section", 20, pw));
    c.specformer.stride = static_cast<int64_t>(param(params, "stride", 10, pw));
    c.specformer.std_floor = param(params, "std_floor", 0.2, pw);
  } else if (c.transform == "aion-image") {
    c.aion.crop = static_cast<int64_t>(param(params, "crop", 96, pw));
  } else {
    throw FormatError(w + ": unknown preprocessing '" + c.transform +
                      "' (known: astroclip-image, specformer-spectrum, aion-image)");
  }
  const bool image_transform = c.transform != "specformer-spectrum";
  if (image_transform != (c.modality == "image"))
    throw FormatError(w + ": preprocessing '" + c.transform + "' does not fit modality '" + c.modality + "'");
  const auto want = expected_shape(c);
  if (!want.empty() && want != c.input_shape)
    throw FormatError(w + ": input.shape does not match what '" + c.transform + "' produces");
  if (c.transform == "specformer-spectrum" &&
      (c.input_shape.size() != 2 || c.input_shape[1] != c.specformer.section + 2))
    throw FormatError(w + ": specformer-spectrum gives (tokens, " + std::to_string(c.specformer.section + 2) +
                      ") inputs, the card says otherwise");
  const json output = field<json>(j, "output", w);
  c.output_dim = field<int64_t>(output, "dim", w + " output");
  if (c.output_dim <= 0) throw FormatError(w + ": output.dim must be positive");
  c.l2_normalized = output.value("l2_normalized", false);
  if (j.contains("shared_space")) c.shared_space = field<std::string>(field<json>(j, "shared_space", w), "id", w + " shared_space");

  const std::string model_path = (fs::path(dir) / c.file).string();
  if (c.file.find("..") != std::string::npos || !fs::is_regular_file(model_path, ec))
    throw NotFound(w + ": model file '" + model_path + "' is missing");
  const std::string actual = sha256_file(model_path);
  if (actual != c.sha256)
    throw FormatError(w + ": sha256 of '" + model_path + "' is " + actual + ", the card says " + c.sha256 +
                      " (a changed or corrupt model file)");
  return c;
}

void prepare_model_inputs(const ModelCard& card, const ImageBatch* images, const SpectrumBatch* spectra,
                          std::vector<float>* out) {
  if (card.modality == "image") {
    if (!images) throw InternalError("image model given no images");
    out->resize(static_cast<size_t>(images->count * card.input_size()));
    if (card.transform == "astroclip-image")
      astroclip_image(*images, card.astroclip, out->data());
    else
      aion_image(*images, card.aion, out->data());
    return;
  }
  if (!spectra) throw InternalError("spectrum model given no spectra");
  const int64_t tokens = specformer_tokens(spectra->length, card.specformer);
  if (tokens != card.input_shape[0])
    throw FormatError("model '" + card.name + "' takes " + std::to_string(card.input_shape[0]) +
                      " tokens (spectra of the DESI length), but spectra of length " +
                      std::to_string(spectra->length) + " give " + std::to_string(tokens));
  out->resize(static_cast<size_t>(spectra->count * card.input_size()));
  specformer_spectrum(*spectra, card.specformer, out->data());
}

}  // namespace mmu

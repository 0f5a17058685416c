#include "mmu/space_map.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "mmu/error.h"
#include "mmu/pca.h"

namespace mmu {

namespace {

// Stored values of `column` by row: numbers as numbers (column_values gives %.17g text).
std::unordered_map<int64_t, nlohmann::json> column_by_row(const Store& store, const std::string& column) {
  std::unordered_map<int64_t, nlohmann::json> out;
  for (const auto& [row, text] : store.column_values(column)) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    const bool number = !text.empty() && end == text.c_str() + text.size() && std::isfinite(v);
    out[row] = number ? nlohmann::json(v) : nlohmann::json(text);
  }
  if (out.empty()) throw NotFound("the store has no catalog column '" + column + "' with values");
  return out;
}

}  // namespace

std::string space_map_json(const Store& store, const std::string& space, const std::string& column,
                           int64_t max_points) {
  const SpaceInfo info = store.space(store.resolve_space_name(space));
  const std::vector<std::pair<int64_t, int64_t>> all = store.space_rows(info.name);
  const int64_t n_all = static_cast<int64_t>(all.size());
  const int64_t stride = n_all > max_points ? (n_all + max_points - 1) / max_points : 1;
  std::vector<int64_t> vrows, rows;
  for (int64_t i = 0; i < n_all; i += stride) {
    vrows.push_back(all[static_cast<size_t>(i)].first);
    rows.push_back(all[static_cast<size_t>(i)].second);
  }
  const int64_t n = static_cast<int64_t>(vrows.size());
  const auto values = column.empty() ? std::unordered_map<int64_t, nlohmann::json>() : column_by_row(store, column);
  auto value_of = [&](int64_t row) {
    const auto it = values.find(row);
    return it == values.end() ? nlohmann::json(nullptr) : it->second;
  };
  const int64_t d = info.dim;
  const std::vector<float> x = store.vectors_at(info.name, vrows);
  nlohmann::json points = nlohmann::json::array();
  const std::vector<CatalogRow> objects = store.rows(rows);
  if (n >= 2) {
    const PcaModel pca = fit_pca(x.data(), n, d, std::min<int64_t>(2, d));
    for (int64_t i = 0; i < n; ++i) {
      double xy[2] = {0, 0};
      for (int64_t c = 0; c < pca.output_dim; ++c)
        for (int64_t j = 0; j < d; ++j)
          xy[c] += static_cast<double>(x[static_cast<size_t>(i * d + j)] - pca.mean[static_cast<size_t>(j)]) *
                   pca.components[static_cast<size_t>(c * d + j)];
      const CatalogRow& o = objects[static_cast<size_t>(i)];
      points.push_back({{"object_id", o.object_id}, {"survey", o.survey}, {"x", xy[0]}, {"y", xy[1]}, {"value", value_of(o.row)}});
    }
  } else if (n == 1) {
    points.push_back({{"object_id", objects[0].object_id}, {"survey", objects[0].survey}, {"x", 0.0}, {"y", 0.0},
                      {"value", value_of(objects[0].row)}});
  }
  const nlohmann::json j{{"space", info.name}, {"modality", info.modality}, {"count", n_all}, {"column", column}, {"points", points}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace mmu

#include "mmu/result_format.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "mmu/error.h"
#include "mmu/text.h"

namespace mmu {

OutputFormat parse_output_format(const std::string& s) {
  if (s == "table") return OutputFormat::kTable;
  if (s == "csv") return OutputFormat::kCsv;
  if (s == "json") return OutputFormat::kJson;
  throw InvalidArgument("--format must be table, csv or json, got '" + s + "'");
}

namespace {

using text::csv_field;
using text::format_double;
using Json = nlohmann::ordered_json;  // keys in the order they are set

std::string describe_object(const CatalogRow& o) {
  return o.object_id + " (" + o.survey + ", ra " + format_double("%.6f", o.ra) + ", dec " + format_double("%.6f", o.dec) + ")";
}

std::string ids_of(const std::vector<CatalogRow>& rows) {
  std::string s;
  for (const CatalogRow& o : rows) s += (s.empty() ? "" : ", ") + o.object_id;
  return s;
}

// "39627... (desi, ra ..., dec ...)", "the mean of A, B", ... for the table's first line.
std::string describe_query(const LikeResult& r) {
  std::string s;
  if (r.query.row < 0) {
    s = r.label;
  } else if (r.positives.size() > 1) {
    s = "the mean of " + ids_of(r.positives);
  } else {
    s = describe_object(r.query);
    if (r.near_sep_arcsec >= 0) s += ", the nearest object to " + r.label + " (" + format_double("%.3f", r.near_sep_arcsec) + " arcsec)";
  }
  if (!r.negatives.empty()) s += ", minus " + ids_of(r.negatives);
  return s;
}

// A number as the table and CSV print it; a NaN or Inf (which a store never
// holds, but a damaged one might) is an empty cell, never "nan" or "inf".
std::string number_cell(const char* printf_format, double v) {
  return std::isfinite(v) ? format_double(printf_format, v) : std::string();
}

void write_table(const LikeResult& r, std::ostream& out) {
  if (!r.error.empty()) {
    out << "query " << r.label << ": error: " << r.error << "\n";
    return;
  }
  out << (r.ranked_list ? r.label : "neighbours of " + describe_query(r)) << " in space " << r.space;
  if (r.via.row >= 0) out << " (using the " << r.space << " of linked " << r.via.survey << " object " << r.via.object_id << ")";
  if (r.default_space) out << " (the store's default space; --space NAME to choose another)";
  if (!r.space_note.empty()) out << " (" << r.space_note << ")";
  out << "\n";
  if (!r.method.empty()) out << "search: " << r.method << "\n";
  const std::vector<std::string> head = {"rank", "object_id", "survey", "ra", "dec", "score"};
  std::vector<std::vector<std::string>> cells;
  for (const Neighbor& n : r.neighbors)
    cells.push_back({std::to_string(n.rank), n.object.object_id, n.object.survey, number_cell("%.6f", n.object.ra),
                     number_cell("%.6f", n.object.dec), number_cell("%.6f", n.score)});
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = head[c].size();
    for (const auto& row : cells) w[c] = std::max(w[c], row[c].size());
  }
  // Text columns left-aligned, numbers right-aligned.
  auto line = [&](const std::vector<std::string>& row) {
    std::string s;
    for (size_t c = 0; c < row.size(); ++c) {
      const bool left = (c == 1 || c == 2);
      const std::string pad(w[c] - row[c].size(), ' ');
      s += (c ? "  " : "") + (left ? row[c] + pad : pad + row[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  line(head);
  for (const auto& row : cells) line(row);
}

void write_csv_rows(const LikeResult& r, const std::string& prefix, std::ostream& out) {
  for (const Neighbor& n : r.neighbors)
    out << prefix << n.rank << ',' << csv_field(n.object.object_id) << ',' << csv_field(n.object.survey) << ','
        << number_cell("%.9f", n.object.ra) << ',' << number_cell("%.9f", n.object.dec) << ',' << number_cell("%.8f", n.score) << "\n";
}

// Each number is rounded as the table and CSV print it (ra, dec %.9f, scores
// %.8f) and then stored as that double: nlohmann would print all 17 digits of
// the raw value. A NaN or inf score stays one, and dump() writes it as null.
double rounded(const char* printf_format, double v) {
  if (!std::isfinite(v)) return v;
  return std::strtod(format_double(printf_format, v).c_str(), nullptr);
}

Json json_object(const CatalogRow& o) {
  Json j;
  j["object_id"] = o.object_id;
  j["survey"] = o.survey;
  j["ra"] = rounded("%.9f", o.ra);
  j["dec"] = rounded("%.9f", o.dec);
  return j;
}

Json json_objects(const std::vector<CatalogRow>& rows) {
  Json a = Json::array();
  for (const CatalogRow& o : rows) a.push_back(json_object(o));
  return a;
}

Json json_result(const LikeResult& r) {
  Json j;
  j["label"] = r.label;
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  j["query"] = r.query.row >= 0 ? json_object(r.query) : Json(nullptr);
  if (r.positives.size() > 1) j["positives"] = json_objects(r.positives);
  if (!r.negatives.empty()) j["negatives"] = json_objects(r.negatives);
  if (r.near_sep_arcsec >= 0) j["near_sep_arcsec"] = rounded("%.6f", r.near_sep_arcsec);
  j["space"] = r.space;
  j["space_is_default"] = r.default_space;
  if (!r.space_note.empty()) j["space_note"] = r.space_note;
  j["method"] = r.method;
  j["k"] = r.requested_k;
  if (r.via.row >= 0) {
    j["via"]["object_id"] = r.via.object_id;
    j["via"]["survey"] = r.via.survey;
  }
  if (!r.note.empty()) j["note"] = r.note;
  Json results = Json::array();
  for (const Neighbor& n : r.neighbors) {
    Json o;
    o["rank"] = n.rank;
    o["object_id"] = n.object.object_id;
    o["survey"] = n.object.survey;
    o["ra"] = rounded("%.9f", n.object.ra);
    o["dec"] = rounded("%.9f", n.object.dec);
    o["score"] = rounded("%.8f", n.score);
    results.push_back(std::move(o));
  }
  j["results"] = std::move(results);
  return j;
}

// One result on one line. Ids and labels are bytes from the files or the user:
// invalid UTF-8 becomes U+FFFD instead of throwing.
void write_json(const LikeResult& r, std::ostream& out) {
  out << json_result(r).dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

void write_like_result(const LikeResult& r, OutputFormat f, std::ostream& out) {
  switch (f) {
    case OutputFormat::kTable: write_table(r, out); break;
    case OutputFormat::kCsv:
      out << "rank,object_id,survey,ra,dec,score\n";
      write_csv_rows(r, "", out);
      break;
    case OutputFormat::kJson:
      write_json(r, out);
      out << "\n";
      break;
  }
}

void write_like_results(const std::vector<LikeResult>& results, OutputFormat f, std::ostream& out) {
  switch (f) {
    case OutputFormat::kTable:
      for (size_t i = 0; i < results.size(); ++i) {
        if (i) out << "\n";
        write_table(results[i], out);
      }
      break;
    case OutputFormat::kCsv:
      // One table for all queries, keyed by the query as given; failed queries have no rows.
      out << "query,rank,object_id,survey,ra,dec,score\n";
      for (const LikeResult& r : results) write_csv_rows(r, csv_field(r.label) + ",", out);
      break;
    case OutputFormat::kJson:
      out << "[";
      for (size_t i = 0; i < results.size(); ++i) {
        out << (i ? ",\n" : "\n");
        write_json(results[i], out);
      }
      out << "\n]\n";
      break;
  }
}

int write_like_batch(const std::vector<LikeResult>& results, OutputFormat f, std::ostream& out, std::ostream& err) {
  write_like_results(results, f, out);
  int failed = 0;
  for (const LikeResult& r : results) {
    if (r.error.empty()) continue;
    ++failed;
    if (f == OutputFormat::kCsv) err << "error: query " << r.label << ": " << r.error << "\n";
  }
  if (failed) err << "error: " << failed << " of " << results.size() << " queries failed (see their blocks)\n";
  return failed ? 1 : 0;
}

}  // namespace mmu

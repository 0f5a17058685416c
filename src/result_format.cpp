#include "mmu/result_format.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "mmu/error.h"

namespace mmu {

OutputFormat parse_output_format(const std::string& s) {
  if (s == "table") return OutputFormat::kTable;
  if (s == "csv") return OutputFormat::kCsv;
  if (s == "json") return OutputFormat::kJson;
  throw InvalidArgument("--format must be table, csv or json, got '" + s + "'");
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// CSV field: quoted only when needed (RFC 4180).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void write_table(const LikeResult& r, std::ostream& out) {
  out << "neighbours of " << r.query.object_id << " (" << r.query.survey << ", ra " << fmt("%.6f", r.query.ra)
      << ", dec " << fmt("%.6f", r.query.dec) << ") in space " << r.space;
  if (r.via.row >= 0) out << " (using the " << r.space << " of linked " << r.via.survey << " object " << r.via.object_id << ")";
  out << "\n";
  const std::vector<std::string> head = {"rank", "object_id", "survey", "ra", "dec", "score"};
  std::vector<std::vector<std::string>> cells;
  for (const Neighbor& n : r.neighbors)
    cells.push_back({std::to_string(n.rank), n.object.object_id, n.object.survey, fmt("%.6f", n.object.ra),
                     fmt("%.6f", n.object.dec), fmt("%.6f", n.score)});
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

void write_csv(const LikeResult& r, std::ostream& out) {
  out << "rank,object_id,survey,ra,dec,score\n";
  for (const Neighbor& n : r.neighbors)
    out << n.rank << ',' << csv_field(n.object.object_id) << ',' << csv_field(n.object.survey) << ','
        << fmt("%.9f", n.object.ra) << ',' << fmt("%.9f", n.object.dec) << ',' << fmt("%.8f", n.score) << "\n";
}

void write_json(const LikeResult& r, std::ostream& out) {
  out << "{\"query\": {\"object_id\": " << json_quote(r.query.object_id) << ", \"survey\": "
      << json_quote(r.query.survey) << ", \"ra\": " << fmt("%.9f", r.query.ra) << ", \"dec\": "
      << fmt("%.9f", r.query.dec) << "},\n \"space\": " << json_quote(r.space) << ", \"k\": " << r.requested_k;
  if (r.via.row >= 0)
    out << ", \"via\": {\"object_id\": " << json_quote(r.via.object_id) << ", \"survey\": " << json_quote(r.via.survey) << "}";
  if (!r.note.empty()) out << ", \"note\": " << json_quote(r.note);
  out << ",\n \"results\": [";
  for (size_t i = 0; i < r.neighbors.size(); ++i) {
    const Neighbor& n = r.neighbors[i];
    out << (i ? ",\n  " : "\n  ") << "{\"rank\": " << n.rank << ", \"object_id\": " << json_quote(n.object.object_id)
        << ", \"survey\": " << json_quote(n.object.survey) << ", \"ra\": " << fmt("%.9f", n.object.ra)
        << ", \"dec\": " << fmt("%.9f", n.object.dec) << ", \"score\": " << fmt("%.8f", n.score) << "}";
  }
  out << (r.neighbors.empty() ? "]}\n" : "\n ]}\n");
}

}  // namespace

void write_like_result(const LikeResult& r, OutputFormat f, std::ostream& out) {
  switch (f) {
    case OutputFormat::kTable: write_table(r, out); break;
    case OutputFormat::kCsv: write_csv(r, out); break;
    case OutputFormat::kJson: write_json(r, out); break;
  }
}

}  // namespace mmu

// Rendering of query results for people (aligned table) and scripts (CSV, JSON).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "mmu/query.h"

namespace mmu {

enum class OutputFormat { kTable, kCsv, kJson };

// "table", "csv" or "json"; throws InvalidArgument naming --format otherwise.
OutputFormat parse_output_format(const std::string& s);

// JSON: one object per result on one line; ra, dec and scores hold the numbers
// the CSV prints (%.9f, %.8f), a NaN or infinite score is null, and bytes that
// are not UTF-8 (in an id or label) become U+FFFD. `serve` replies with it.
void write_like_result(const LikeResult& r, OutputFormat f, std::ostream& out);
// Batch mode: one block per query (table), one CSV with a leading `query`
// column, or a JSON array. A failed query shows its error.
void write_like_results(const std::vector<LikeResult>& results, OutputFormat f, std::ostream& out);
// write_like_results, then each failed query's error on `err` (CSV, where the
// rows cannot show it) and a count of the failures; returns the exit code
// (0 when every query answered, else 1).
int write_like_batch(const std::vector<LikeResult>& results, OutputFormat f, std::ostream& out, std::ostream& err);

}  // namespace mmu

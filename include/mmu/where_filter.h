// `--where`: a small boolean grammar over catalog columns, compiled to
// parameterised SQL. User text never enters the SQL: a built-in name maps to a
// fixed column of `objects o`, and every other name and every literal is a
// bound parameter.
//
//   expr      := and_expr ('or' and_expr)*
//   and_expr  := not_expr ('and' not_expr)*
//   not_expr  := 'not' not_expr | '(' expr ')' | predicate
//   predicate := NAME op literal                       op: < <= > >= = == != <>
//              | NAME ['not'] 'between' literal 'and' literal
//              | NAME ['not'] 'in' '(' literal (',' literal)* ')'
//              | NAME 'is' ['not'] 'null'
//   literal   := ['-'|'+'] NUMBER | 'text' | "text"    (a doubled quote inside is one quote)
//
// Keywords are case-insensitive; names are case-sensitive, as in the files.
// Built-in names: object_id, survey, subset (text), ra, dec, healpix (numbers);
// any other name is a stored catalog column (object_values).
//
// Semantics are SQL's three-valued logic: comparing a stored column an object
// lacks, or comparing its number with a text literal (or its text with a
// number), is unknown, and unknown never selects the object, even under `not`.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace mmu {

class Store;

using SqlValue = std::variant<int64_t, double, std::string>;

// A boolean SQL expression over `objects o` with `?` placeholders, and the
// values to bind to them in order.
struct SqlFilter {
  std::string sql;
  std::vector<SqlValue> params;
};

// object_id, survey, subset, ra, dec, healpix.
const std::vector<std::string>& builtin_columns();

// Parses `expression`; names other than built-ins must be in stored_columns.
// Throws InvalidArgument quoting the expression and saying at which column
// (1-based character position) it failed and what was expected there.
SqlFilter compile_where(const std::string& expression, const std::vector<std::string>& stored_columns);

// Built-in names, then the store's catalog columns in name order (none for a
// format-1 store, which predates them).
std::vector<std::string> catalog_columns(const Store& store);

// Catalog rows of the objects `expression` selects, ascending. Throws
// InvalidArgument for a bad expression, or for a format-1 store (saying to rebuild).
std::vector<int64_t> rows_where(const Store& store, const std::string& expression);

}  // namespace mmu

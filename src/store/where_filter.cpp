#include "mmu/where_filter.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "mmu/error.h"
#include "mmu/store.h"
#include "store/sqlite_util.h"
#include "store/layout.h"

namespace mmu {

namespace {

// Guards against stack exhaustion in the parser and SQLite's expression
// depth limit (1000): a deeper or longer expression is surely not typed by hand.
constexpr int kMaxNesting = 50;
constexpr int kMaxPredicates = 200;
constexpr size_t kMaxParams = 10000;  // SQLite allows 32766 per statement
constexpr int kFirstValuesVersion = 2;

struct BuiltinColumn {
  const char* name;
  const char* sql;  // fixed text: the only column names that reach SQL
  bool numeric;
};
constexpr BuiltinColumn kBuiltins[] = {
    {"object_id", "o.object_id", false}, {"survey", "o.survey", false}, {"subset", "o.subset", false},
    {"ra", "o.ra", true},                {"dec", "o.dec", true},        {"healpix", "o.healpix", true},
};

const BuiltinColumn* find_builtin(const std::string& name) {
  for (const BuiltinColumn& b : kBuiltins)
    if (name == b.name) return &b;
  return nullptr;
}

// ---- tokens ----

enum class Tok { kName, kNumber, kString, kOp, kLParen, kRParen, kComma, kSign, kEnd };

struct Token {
  Tok kind;
  std::string text;  // name, number spelling, string contents (quotes removed), operator
  size_t pos;        // 0-based offset of the first character
};

bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(const std::string& e) : e_(e) {}

  std::vector<Token> tokens() {
    std::vector<Token> out;
    while (true) {
      while (i_ < e_.size() && std::isspace(static_cast<unsigned char>(e_[i_]))) ++i_;
      if (i_ == e_.size()) break;
      out.push_back(next());
    }
    out.push_back({Tok::kEnd, "", e_.size()});
    return out;
  }

  [[noreturn]] static void fail(const std::string& e, size_t pos, const std::string& what) {
    throw InvalidArgument("--where \"" + e + "\": " + what + " at column " + std::to_string(pos + 1));
  }

 private:
  Token next() {
    const size_t start = i_;
    const char c = e_[i_];
    if (name_start(c)) {
      while (i_ < e_.size() && name_char(e_[i_])) ++i_;
      return {Tok::kName, e_.substr(start, i_ - start), start};
    }
    if (digit(c) || (c == '.' && i_ + 1 < e_.size() && digit(e_[i_ + 1]))) return number();
    if (c == '\'' || c == '"') return quoted();
    const auto next_is = [&](char n) { return start + 1 < e_.size() && e_[start + 1] == n; };
    const auto token = [&](Tok kind, size_t len, std::string text) {
      i_ = start + len;
      return Token{kind, std::move(text), start};
    };
    switch (c) {
      case '(': return token(Tok::kLParen, 1, "(");
      case ')': return token(Tok::kRParen, 1, ")");
      case ',': return token(Tok::kComma, 1, ",");
      case '-':
      case '+': return token(Tok::kSign, 1, std::string(1, c));
      case '<':
        if (next_is('=')) return token(Tok::kOp, 2, "<=");
        if (next_is('>')) return token(Tok::kOp, 2, "<>");
        return token(Tok::kOp, 1, "<");
      case '>': return next_is('=') ? token(Tok::kOp, 2, ">=") : token(Tok::kOp, 1, ">");
      case '=': return next_is('=') ? token(Tok::kOp, 2, "==") : token(Tok::kOp, 1, "=");
      case '!':
        if (next_is('=')) return token(Tok::kOp, 2, "!=");
        break;
      default: break;
    }
    fail(e_, start, std::string("unexpected character '") + c + "'");
  }

  Token number() {
    const size_t start = i_;
    while (i_ < e_.size() && digit(e_[i_])) ++i_;
    if (i_ < e_.size() && e_[i_] == '.') {
      ++i_;
      while (i_ < e_.size() && digit(e_[i_])) ++i_;
    }
    if (i_ < e_.size() && (e_[i_] == 'e' || e_[i_] == 'E')) {
      size_t j = i_ + 1;
      if (j < e_.size() && (e_[j] == '+' || e_[j] == '-')) ++j;
      if (j == e_.size() || !digit(e_[j])) fail(e_, i_, "exponent without digits in a number");
      i_ = j;
      while (i_ < e_.size() && digit(e_[i_])) ++i_;
    }
    if (i_ < e_.size() && (name_char(e_[i_]) || e_[i_] == '.'))
      fail(e_, i_, "unexpected '" + std::string(1, e_[i_]) + "' in a number");
    return {Tok::kNumber, e_.substr(start, i_ - start), start};
  }

  Token quoted() {
    const size_t start = i_;
    const char q = e_[i_++];
    std::string text;
    while (true) {
      if (i_ == e_.size()) fail(e_, start, std::string("string opened with ") + q + " is not closed");
      if (e_[i_] == q) {
        if (i_ + 1 < e_.size() && e_[i_ + 1] == q) {  // doubled quote: one quote character
          text += q;
          i_ += 2;
          continue;
        }
        ++i_;
        return {Tok::kString, text, start};
      }
      text += e_[i_++];
    }
  }

  const std::string& e_;
  size_t i_ = 0;
};

// ---- syntax tree ----

struct Literal {
  SqlValue value;
  std::string spelling;  // as typed (sign included); bound as text against a text built-in
  bool text = false;
  size_t pos = 0;
};

struct Node {
  enum Kind { kAnd, kOr, kNot, kCompare, kBetween, kIn, kIsNull } kind = kCompare;
  std::vector<Node> children;  // and, or, not
  std::string column;          // predicates
  size_t column_pos = 0;
  std::string op;              // kCompare: < <= > >= = !=
  bool negated = false;        // not between, not in, is not null
  std::vector<Literal> literals;
};

bool keyword(const Token& t, const char* word) {
  if (t.kind != Tok::kName || t.text.size() != std::strlen(word)) return false;
  for (size_t i = 0; i < t.text.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(t.text[i])) != word[i]) return false;
  return true;
}

bool reserved(const Token& t) {
  for (const char* w : {"and", "or", "not", "between", "in", "is", "null"})
    if (keyword(t, w)) return true;
  return false;
}

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEnd: return "end of expression";
    case Tok::kString: return "string '" + t.text + "'";
    case Tok::kNumber: return "number " + t.text;
    default: return "'" + t.text + "'";
  }
}

class Parser {
 public:
  Parser(const std::string& e, std::vector<Token> tokens, const std::set<std::string>& stored,
         const std::vector<std::string>& listing)
      : e_(e), t_(std::move(tokens)), stored_(stored), listing_(listing) {}

  Node parse() {
    Node n = or_expr();
    if (peek().kind != Tok::kEnd) fail(peek(), "expected 'and', 'or', ')' or the end");
    return n;
  }

 private:
  const Token& peek() const { return t_[i_]; }
  const Token& take() { return t_[i_ == t_.size() - 1 ? i_ : i_++]; }
  [[noreturn]] void fail(const Token& at, const std::string& expected) const {
    Lexer::fail(e_, at.pos, expected + ", found " + describe(at));
  }

  Node or_expr() { return chain(Node::kOr, "or", &Parser::and_expr); }
  Node and_expr() { return chain(Node::kAnd, "and", &Parser::not_expr); }

  Node chain(Node::Kind kind, const char* word, Node (Parser::*operand)()) {
    Node first = (this->*operand)();
    if (!keyword(peek(), word)) return first;
    Node n;
    n.kind = kind;
    n.children.push_back(std::move(first));
    while (keyword(peek(), word)) {
      take();
      n.children.push_back((this->*operand)());
    }
    return n;
  }

  Node not_expr() {
    if (++depth_ > kMaxNesting) fail(peek(), "nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    Node n;
    if (keyword(peek(), "not")) {
      take();
      n.kind = Node::kNot;
      n.children.push_back(not_expr());
    } else if (peek().kind == Tok::kLParen) {
      take();
      n = or_expr();
      if (peek().kind != Tok::kRParen) fail(peek(), "expected ')' (or 'and', 'or')");
      take();
    } else {
      n = predicate();
    }
    --depth_;
    return n;
  }

  Node predicate() {
    const Token& name = peek();
    if (name.kind != Tok::kName || reserved(name)) fail(name, "expected a column name");
    take();
    check_column(name);
    if (++predicates_ > kMaxPredicates) fail(name, "more than " + std::to_string(kMaxPredicates) + " conditions");
    Node n;
    n.column = name.text;
    n.column_pos = name.pos;
    if (peek().kind == Tok::kOp) {
      n.kind = Node::kCompare;
      n.op = take().text;  // SQL spellings: == is =, <> is !=
      if (n.op == "==") n.op = "=";
      if (n.op == "<>") n.op = "!=";
      n.literals.push_back(literal());
      return n;
    }
    if (keyword(peek(), "is")) {
      take();
      n.kind = Node::kIsNull;
      if (keyword(peek(), "not")) {
        take();
        n.negated = true;
      }
      if (!keyword(peek(), "null")) fail(peek(), "expected 'null' after 'is'");
      take();
      return n;
    }
    if (keyword(peek(), "not")) {
      take();
      n.negated = true;
      if (!keyword(peek(), "between") && !keyword(peek(), "in")) fail(peek(), "expected 'between' or 'in' after 'not'");
    }
    if (keyword(peek(), "between")) {
      take();
      n.kind = Node::kBetween;
      n.literals.push_back(literal());
      if (!keyword(peek(), "and")) fail(peek(), "expected 'and' in 'between ... and ...'");
      take();
      n.literals.push_back(literal());
      same_kind(n);
      return n;
    }
    if (keyword(peek(), "in")) {
      take();
      n.kind = Node::kIn;
      if (peek().kind != Tok::kLParen) fail(peek(), "expected '(' after 'in'");
      take();
      n.literals.push_back(literal());
      while (peek().kind == Tok::kComma) {
        take();
        n.literals.push_back(literal());
      }
      if (peek().kind != Tok::kRParen) fail(peek(), "expected ',' or ')' in the 'in' list");
      take();
      same_kind(n);
      return n;
    }
    fail(peek(), "expected a comparison (< <= > >= = != <>), 'between', 'in' or 'is' after '" + name.text + "'");
  }

  Literal literal() {
    Literal l;
    l.pos = peek().pos;
    if (peek().kind == Tok::kString) {
      l.text = true;
      l.spelling = take().text;
      l.value = l.spelling;
      return l;
    }
    std::string sign;
    if (peek().kind == Tok::kSign) sign = take().text;
    if (peek().kind != Tok::kNumber)
      fail(peek(), sign.empty() ? "expected a number or a quoted string" : "expected a number after '" + sign + "'");
    l.spelling = (sign == "-" ? "-" : "") + take().text;
    l.value = number_value(l);
    return l;
  }

  // Integers stay integers so 64-bit ids (TARGETID) compare exactly.
  SqlValue number_value(const Literal& l) const {
    const bool integral = l.spelling.find_first_of(".eE") == std::string::npos;
    errno = 0;
    char* end = nullptr;
    if (integral) {
      const long long v = std::strtoll(l.spelling.c_str(), &end, 10);
      if (errno == 0) return static_cast<int64_t>(v);
      errno = 0;
    }
    const double d = std::strtod(l.spelling.c_str(), &end);
    if (errno == ERANGE && !std::isfinite(d)) Lexer::fail(e_, l.pos, "number " + l.spelling + " is out of range");
    return d;
  }

  void same_kind(const Node& n) const {
    for (const Literal& l : n.literals)
      if (l.text != n.literals[0].text)
        Lexer::fail(e_, l.pos, "mixed numbers and strings in one condition on '" + n.column + "'");
  }

  void check_column(const Token& name) const {
    if (find_builtin(name.text) || stored_.count(name.text)) return;
    std::string list;
    for (const std::string& c : listing_) list += (list.empty() ? "" : ", ") + c;
    Lexer::fail(e_, name.pos, "unknown column '" + name.text + "' (columns: " + list + ")");
  }

  const std::string& e_;
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int predicates_ = 0;
  const std::set<std::string>& stored_;
  const std::vector<std::string>& listing_;
};

// ---- SQL ----

// Writes a tree in negation normal form: `not` is pushed down to the
// predicates, each of which is then a plain set of rows. Under SQL's
// three-valued logic an and/or tree of such sets is true exactly where every
// unknown predicate taken as false still makes it true, so this equals SQL's
// answer while letting every predicate use the (name, num) index.
class Emitter {
 public:
  Emitter(const std::string& e, SqlFilter* out) : e_(e), out_(out) {}

  void emit(const Node& n, bool negated) {
    switch (n.kind) {
      case Node::kNot: return emit(n.children[0], !negated);
      case Node::kAnd:
      case Node::kOr: {
        const bool is_and = (n.kind == Node::kAnd) != negated;  // De Morgan
        sql() += "(";
        for (size_t i = 0; i < n.children.size(); ++i) {
          if (i) sql() += is_and ? " AND " : " OR ";
          emit(n.children[i], negated);
        }
        sql() += ")";
        return;
      }
      default:
        if (const BuiltinColumn* b = find_builtin(n.column)) return builtin(n, *b, negated != n.negated);
        return stored(n, negated != n.negated);
    }
  }

 private:
  std::string& sql() { return out_->sql; }
  void bind(SqlValue v) {
    if (out_->params.size() == kMaxParams)
      throw InvalidArgument("--where \"" + e_ + "\": more than " + std::to_string(kMaxParams) + " values");
    out_->params.push_back(std::move(v));
    sql() += "?";
  }
  void bind_list(const std::vector<Literal>& ls, bool as_text) {
    for (size_t i = 0; i < ls.size(); ++i) {
      if (i) sql() += ", ";
      bind(as_text ? SqlValue(ls[i].spelling) : ls[i].value);
    }
  }

  // Built-in columns are never NULL, so `NOT (...)` is the exact complement.
  void builtin(const Node& n, const BuiltinColumn& b, bool negated) {
    for (const Literal& l : n.literals)
      if (b.numeric && l.text)
        Lexer::fail(e_, l.pos, "'" + n.column + "' is a number; compare it with a number, not a string");
    // A number against a text built-in means its spelling: object_id = 39627745672937933.
    const bool as_text = !b.numeric;
    sql() += negated ? "NOT (" : "(";
    sql() += b.sql;
    switch (n.kind) {
      case Node::kCompare:
        sql() += " " + n.op + " ";
        bind_list(n.literals, as_text);
        break;
      case Node::kBetween:
        sql() += " BETWEEN ";
        bind(as_text ? SqlValue(n.literals[0].spelling) : n.literals[0].value);
        sql() += " AND ";
        bind(as_text ? SqlValue(n.literals[1].spelling) : n.literals[1].value);
        break;
      case Node::kIn:
        sql() += " IN (";
        bind_list(n.literals, as_text);
        sql() += ")";
        break;
      default:  // kIsNull
        sql() += " IS NULL";
        break;
    }
    sql() += ")";
  }

  // A stored column: the rows whose value of that name satisfies the
  // predicate, with the complement taken only over rows that have a value of
  // the literal's kind (missing or mismatched stays unknown).
  void stored(const Node& n, bool negated) {
    if (n.kind == Node::kIsNull) {
      sql() += negated ? "o.row IN" : "o.row NOT IN";
      sql() += " (SELECT v.row FROM object_values v WHERE v.name = ";
      bind(n.column);
      sql() += ")";
      return;
    }
    const std::string value = n.literals[0].text ? "v.txt" : "v.num";
    sql() += "o.row IN (SELECT v.row FROM object_values v WHERE v.name = ";
    bind(n.column);
    sql() += " AND ";
    switch (n.kind) {
      case Node::kCompare:
        sql() += value + " " + (negated ? complement(n.op) : n.op) + " ";
        bind(n.literals[0].value);
        break;
      case Node::kBetween:
        if (negated) {
          sql() += "(" + value + " < ";
          bind(n.literals[0].value);
          sql() += " OR " + value + " > ";
          bind(n.literals[1].value);
          sql() += ")";
        } else {
          sql() += value + " BETWEEN ";
          bind(n.literals[0].value);
          sql() += " AND ";
          bind(n.literals[1].value);
        }
        break;
      default:  // kIn
        sql() += value + (negated ? " NOT IN (" : " IN (");
        bind_list(n.literals, false);
        sql() += ")";
        break;
    }
    sql() += ")";
  }

  // Values are totally ordered (NaN is never stored), so the complement of a
  // comparison is the opposite comparison.
  static std::string complement(const std::string& op) {
    if (op == "<") return ">=";
    if (op == "<=") return ">";
    if (op == ">") return "<=";
    if (op == ">=") return "<";
    if (op == "=") return "!=";
    return "=";
  }

  const std::string& e_;
  SqlFilter* out_;
};

std::string catalog_path(const Store& store) {
  return layout::catalog_file(store.generation_path());
}

int64_t format_version(sql::Db& db) {
  auto v = db.prepare("PRAGMA user_version");
  v.step();
  return v.int64(0);
}

std::vector<std::string> stored_columns(sql::Db& db) {
  std::vector<std::string> out;
  if (format_version(db) < kFirstValuesVersion) return out;
  auto s = db.prepare("SELECT name FROM value_columns ORDER BY name");
  while (s.step()) out.push_back(s.text(0));
  return out;
}

}  // namespace

const std::vector<std::string>& builtin_columns() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const BuiltinColumn& b : kBuiltins) v.push_back(b.name);
    return v;
  }();
  return names;
}

SqlFilter compile_where(const std::string& expression, const std::vector<std::string>& stored_columns) {
  std::vector<std::string> listing = builtin_columns();
  listing.insert(listing.end(), stored_columns.begin(), stored_columns.end());
  const std::set<std::string> stored(stored_columns.begin(), stored_columns.end());
  Lexer lexer(expression);
  std::vector<Token> tokens = lexer.tokens();
  if (tokens.size() == 1) throw InvalidArgument("--where is empty; give a condition such as \"Z < 0.3\"");
  const Node tree = Parser(expression, std::move(tokens), stored, listing).parse();
  SqlFilter out;
  Emitter(expression, &out).emit(tree, false);
  return out;
}

std::vector<std::string> catalog_columns(const Store& store) {
  sql::Db db(catalog_path(store), SQLITE_OPEN_READONLY);
  std::vector<std::string> out = builtin_columns();
  for (std::string& c : stored_columns(db)) out.push_back(std::move(c));
  return out;
}

std::vector<int64_t> rows_where(const Store& store, const std::string& expression) {
  sql::Db db(catalog_path(store), SQLITE_OPEN_READONLY);
  if (const int64_t v = format_version(db); v < kFirstValuesVersion)
    throw InvalidArgument("--where needs catalog columns, which store '" + store.path() + "' (format version " +
                          std::to_string(v) + ") predates: rebuild it with mmu-index build <folder of MMU files> --store " +
                          store.path());
  const SqlFilter f = compile_where(expression, stored_columns(db));
  auto s = db.prepare("SELECT o.row FROM objects o WHERE " + f.sql + " ORDER BY o.row");
  for (size_t i = 0; i < f.params.size(); ++i) {
    const int at = static_cast<int>(i + 1);
    std::visit([&](const auto& v) { s.bind(at, v); }, f.params[i]);
  }
  std::vector<int64_t> rows;
  while (s.step()) rows.push_back(s.int64(0));
  return rows;
}

}  // namespace mmu

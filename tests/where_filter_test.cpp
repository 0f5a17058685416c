#include "mmu/where_filter.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "mmu/build.h"
#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/store.h"
#include "base/sha256.h"
#include "test_util.h"

using mmu::test::TempDir;

namespace {

// Three surveys in three layouts (row table with NaN, big-endian, gzip, bool,
// 64-bit ids, byte and UTF-8 strings; per-object scalar files; MaNGA-like
// groups, one lacking z), all catalog-only so the build needs no PCA. The
// script also writes every value it put in the files to values.tsv:
// survey, object_id, name, kind (i/r/t), value.
constexpr const char* kFixture = R"py(
rng = np.random.default_rng(7)
rows = []
def dump(survey, oid, name, kind, v):
    rows.append(f"{survey}\t{oid}\t{name}\t{kind}\t{v}")
def table(path, cols):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, (v, kw) in cols.items():
            f.create_dataset(k, data=v, **kw)

n = 40
ra = rng.uniform(0, 360, n); dec = rng.uniform(-80, 80, n)
z = rng.uniform(0, 1, n); z[0] = 0.25; z[3] = np.nan
zerr = rng.uniform(0, 0.01, n).astype(">f4")
zwarn = rng.integers(0, 3, n)
flag = rng.integers(0, 2, n).astype(bool)
kinds = [b"GALAXY", b"QSO", b"STAR", b"O'X"]
spectype = np.array([kinds[i % 4] for i in range(n)], dtype="S6")
tid = (2 ** 60 + np.arange(n)).astype(np.int64)
table(ROOT + "/alpha/s1/healpix=1/001-of-001.hdf5", {
    "object_id": (np.arange(n), {}), "ra": (ra, {}), "dec": (dec, {}),
    "Z": (z, {}), "ZERR": (zerr, {}), "ZWARN": (zwarn, {}), "FLAG": (flag, {}),
    "SPECTYPE": (spectype, {}), "TARGETID": (tid, {}),
    "FLUX_IVAR": (rng.uniform(0, 1, (n, 3)), {}),                     # not a scalar per object
    "COMMENT": (np.array([b"x" * 100] * n, dtype="S100"), {}),        # free text, not a value
})
for i in range(n):
    s, oid = "alpha", str(i)
    dump(s, oid, "ra", "r", repr(float(ra[i]))); dump(s, oid, "dec", "r", repr(float(dec[i])))
    if not np.isnan(z[i]): dump(s, oid, "Z", "r", repr(float(z[i])))
    dump(s, oid, "ZERR", "r", repr(float(zerr[i]))); dump(s, oid, "ZWARN", "i", int(zwarn[i]))
    dump(s, oid, "FLAG", "i", int(flag[i])); dump(s, oid, "SPECTYPE", "t", spectype[i].decode())
    dump(s, oid, "TARGETID", "i", int(tid[i]))

m = 30
ra = rng.uniform(0, 360, m); dec = rng.uniform(-80, 80, m)
z = rng.uniform(0, 1, m).astype(np.float32)
flux = rng.uniform(0, 20, m)
ids = np.array([f"b{i}".encode() for i in range(m)], dtype="S4")
spectype = np.array(["GALAXY" if i % 3 else "STAR" for i in range(m)], dtype=h5py.string_dtype("utf-8", 8))
table(ROOT + "/beta/s2/healpix=2/001-of-001.hdf5", {
    "object_id": (ids, {}), "ra": (ra, {}), "dec": (dec, {}),
    "Z": (z, {"compression": "gzip", "chunks": (8,)}), "FLUX_R": (flux, {}),
    "SPECTYPE": (spectype, {}),
})
for i in range(m):
    s, oid = "beta", f"b{i}"
    dump(s, oid, "ra", "r", repr(float(ra[i]))); dump(s, oid, "dec", "r", repr(float(dec[i])))
    dump(s, oid, "Z", "r", repr(float(z[i]))); dump(s, oid, "FLUX_R", "r", repr(float(flux[i])))
    dump(s, oid, "SPECTYPE", "t", spectype[i].decode() if isinstance(spectype[i], bytes) else spectype[i])

for i in range(3):
    r, d, red = 10.0 + i, -5.0 - i, 0.02 * (i + 1)
    path = ROOT + f"/gamma/sn/healpix=0003/example_SN{i}.hdf5"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f["object_id"] = np.bytes_(f"SN{i}"); f["ra"] = r; f["dec"] = d; f["redshift"] = red
        f["bands"] = np.array([b"g", b"r"])
    s, oid = "gamma", f"SN{i}"
    dump(s, oid, "ra", "r", repr(r)); dump(s, oid, "dec", "r", repr(d)); dump(s, oid, "redshift", "r", repr(red))

path = ROOT + "/manga/manga/healpix=4/0001-of-0001.hdf5"
os.makedirs(os.path.dirname(path), exist_ok=True)
with h5py.File(path, "w") as f:
    for i, name in enumerate(["8485-1901", "8485-1902", "8485-1903"]):
        g = f.create_group(name)
        g["object_id"] = name; g["ra"] = 200.0 + i; g["dec"] = 40.0
        if i != 1:
            g["z"] = 0.01 * (i + 1)
            dump("manga", name, "z", "r", repr(0.01 * (i + 1)))
        g["spaxel_size_unit"] = "arcsec"
        dump("manga", name, "ra", "r", repr(200.0 + i)); dump("manga", name, "dec", "r", repr(40.0))
        dump("manga", name, "spaxel_size_unit", "t", "arcsec")
open(ROOT + "/values.tsv", "w").write("\n".join(rows) + "\n")
)py";

using Value = std::variant<int64_t, double, std::string>;

// One fixture object as the script wrote it.
struct Obj {
  std::string survey, id;
  std::map<std::string, Value> values;
};

// Three-valued truth: nullopt is SQL's unknown.
using Tri = std::optional<bool>;
Tri And(Tri a, Tri b) {
  if (a == false || b == false) return false;
  if (!a || !b) return std::nullopt;
  return true;
}
Tri Or(Tri a, Tri b) {
  if (a == true || b == true) return true;
  if (!a || !b) return std::nullopt;
  return false;
}
Tri Not(Tri a) { return a ? Tri(!*a) : std::nullopt; }

// name <op> number: unknown when the object lacks the column or holds text.
Tri num(const Obj& o, const std::string& name, const std::function<bool(long double)>& test) {
  auto it = o.values.find(name);
  if (it == o.values.end()) return std::nullopt;
  if (auto* i = std::get_if<int64_t>(&it->second)) return test(static_cast<long double>(*i));
  if (auto* d = std::get_if<double>(&it->second)) return test(*d);
  return std::nullopt;
}
Tri txt(const Obj& o, const std::string& name, const std::function<bool(const std::string&)>& test) {
  auto it = o.values.find(name);
  if (it == o.values.end() || !std::holds_alternative<std::string>(it->second)) return std::nullopt;
  return test(std::get<std::string>(it->second));
}
Tri has(const Obj& o, const std::string& name) { return o.values.count(name) > 0; }
// A double literal as SQLite sees it, widened for exact comparison with 64-bit integers.
long double D(double v) { return v; }

struct Fixture {
  TempDir dir{"where_filter"};
  std::string store = dir / "store";
  std::vector<Obj> objects;

  Fixture() {
    REQUIRE(mmu::test::run_python(dir.path(), "ROOT = '" + dir / "data" + "'\n" + kFixture) == 0);
    mmu::BuildOptions opt;
    opt.roots = {dir / "data"};
    opt.store = store;
    opt.progress = false;
    mmu::build_store(opt);
    std::ifstream in(dir / "data/values.tsv");
    std::string line;
    std::map<std::pair<std::string, std::string>, Obj> by_key;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string survey, id, name, kind, text;
      std::getline(f, survey, '\t');
      std::getline(f, id, '\t');
      std::getline(f, name, '\t');
      std::getline(f, kind, '\t');
      std::getline(f, text);
      Obj& o = by_key[{survey, id}];
      o.survey = survey;
      o.id = id;
      if (kind == "i") o.values[name] = static_cast<int64_t>(std::stoll(text));
      else if (kind == "r") o.values[name] = std::stod(text);
      else o.values[name] = text;
    }
    for (auto& [k, o] : by_key) objects.push_back(o);
  }

  std::set<std::pair<std::string, std::string>> expected(const std::function<Tri(const Obj&)>& pred) const {
    std::set<std::pair<std::string, std::string>> out;
    for (const Obj& o : objects)
      if (pred(o) == true) out.insert({o.survey, o.id});
    return out;
  }
  std::set<std::pair<std::string, std::string>> selected(const mmu::Store& s, const std::string& where) const {
    const std::vector<int64_t> rows = mmu::rows_where(s, where);
    CHECK(std::is_sorted(rows.begin(), rows.end()));
    std::set<std::pair<std::string, std::string>> out;
    for (const auto& r : s.rows(rows)) out.insert({r.survey, r.object_id});
    return out;
  }
};

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return mmu::sha256_hex(ss.str());
}

}  // namespace

TEST_CASE("where filters select exactly the rows an independent evaluation selects", "[where]") {
  Fixture fx;
  auto store = mmu::Store::open(fx.store);
  REQUIRE(store->num_objects() == 40 + 30 + 3 + 3);
  using O = const Obj&;
  const std::vector<std::pair<std::string, std::function<Tri(O)>>> cases = {
      {"Z < 0.3", [](O o) { return num(o, "Z", [](long double v) { return v < D(0.3); }); }},
      {"Z < 0.3 and FLUX_R > 10",
       [](O o) { return And(num(o, "Z", [](long double v) { return v < D(0.3); }), num(o, "FLUX_R", [](long double v) { return v > 10; })); }},
      {"not (Z < 0.3)", [](O o) { return Not(num(o, "Z", [](long double v) { return v < D(0.3); })); }},
      {"NOT NOT not Z<0.3", [](O o) { return Not(num(o, "Z", [](long double v) { return v < D(0.3); })); }},
      {"Z between 0.1 and 0.5 Or SPECTYPE = 'QSO'",
       [](O o) { return Or(num(o, "Z", [](long double v) { return v >= D(0.1) && v <= D(0.5); }), txt(o, "SPECTYPE", [](auto& s) { return s == "QSO"; })); }},
      {"Z not between 0.1 and 0.5", [](O o) { return Not(num(o, "Z", [](long double v) { return v >= D(0.1) && v <= D(0.5); })); }},
      {"SPECTYPE in ('GALAXY', \"STAR\")", [](O o) { return txt(o, "SPECTYPE", [](auto& s) { return s == "GALAXY" || s == "STAR"; }); }},
      {"SPECTYPE NOT IN ('GALAXY')", [](O o) { return Not(txt(o, "SPECTYPE", [](auto& s) { return s == "GALAXY"; })); }},
      {"not SPECTYPE in ('GALAXY') or z is not null",
       [](O o) { return Or(Not(txt(o, "SPECTYPE", [](auto& s) { return s == "GALAXY"; })), has(o, "z")); }},
      {"SPECTYPE = \"O'X\"", [](O o) { return txt(o, "SPECTYPE", [](auto& s) { return s == "O'X"; }); }},
      {"SPECTYPE = 'O''X'", [](O o) { return txt(o, "SPECTYPE", [](auto& s) { return s == "O'X"; }); }},
      {"SPECTYPE > 'GALAXY'", [](O o) { return txt(o, "SPECTYPE", [](auto& s) { return s > "GALAXY"; }); }},
      {"Z is null", [](O o) { return Not(has(o, "Z")); }},
      {"not Z is null", [](O o) { return has(o, "Z"); }},
      {"z is null and survey = 'manga'", [](O o) { return And(Not(has(o, "z")), Tri(o.survey == "manga")); }},
      {"Z = 0.25", [](O o) { return num(o, "Z", [](long double v) { return v == D(0.25); }); }},
      {"Z == 0.25 or Z <> 0.25", [](O o) { return num(o, "Z", [](long double) { return true; }); }},
      {"TARGETID = 1152921504606846977", [](O o) { return num(o, "TARGETID", [](long double v) { return v == 1152921504606846977.0L; }); }},
      {"TARGETID >= 1152921504606846990", [](O o) { return num(o, "TARGETID", [](long double v) { return v >= 1152921504606846990.0L; }); }},
      {"FLAG = 1 and not ZWARN != 0",
       [](O o) { return And(num(o, "FLAG", [](long double v) { return v == 1; }), Not(num(o, "ZWARN", [](long double v) { return v != 0; }))); }},
      {"ZWARN in (0, 2) AND ZERR < 5e-3", [](O o) {
         return And(num(o, "ZWARN", [](long double v) { return v == 0 || v == 2; }),
                    num(o, "ZERR", [](long double v) { return v < D(5e-3); }));
       }},
      {"Z >= -1e-3 and Z > -.5", [](O o) { return num(o, "Z", [](long double v) { return v >= -D(0.001); }); }},
      {"ra > 100 and dec < 0", [](O o) {
         return And(num(o, "ra", [](long double v) { return v > 100; }), num(o, "dec", [](long double v) { return v < 0; }));
       }},
      {"survey = 'beta' and not subset != 's2'", [](O o) { return Tri(o.survey == "beta"); }},
      {"object_id = 7 or object_id in ('b3', 'b5')", [](O o) { return Tri(o.id == "7" || o.id == "b3" || o.id == "b5"); }},
      {"healpix between 0 and 3071", [](O) { return Tri(true); }},
      {"redshift < 0.05", [](O o) { return num(o, "redshift", [](long double v) { return v < D(0.05); }); }},
      {"z > 0.015 or spaxel_size_unit = 'arcsec' and z is null", [](O o) {
         return Or(num(o, "z", [](long double v) { return v > D(0.015); }),
                   And(txt(o, "spaxel_size_unit", [](auto& s) { return s == "arcsec"; }), Not(has(o, "z"))));
       }},
      {"(Z < 0.3 or FLUX_R > 10) and not SPECTYPE = 'STAR'", [](O o) {
         return And(Or(num(o, "Z", [](long double v) { return v < D(0.3); }), num(o, "FLUX_R", [](long double v) { return v > 10; })),
                    Not(txt(o, "SPECTYPE", [](auto& s) { return s == "STAR"; })));
       }},
      // A string against numbers (or a number against text) is unknown, negated or not.
      {"Z = 'abc'", [](O) { return Tri(false); }},
      {"not Z = 'abc'", [](O) { return Tri(false); }},
      {"not SPECTYPE < 5", [](O) { return Tri(false); }},
  };
  for (const auto& [where, pred] : cases) {
    INFO(where);
    const auto want = fx.expected(pred);
    CHECK(fx.selected(*store, where) == want);
  }
  // The fixture exercises both outcomes, so equal sets are not trivially empty.
  CHECK(fx.selected(*store, "Z < 0.3").size() > 5);
  CHECK(fx.selected(*store, "not (Z < 0.3)").size() > 5);
}

TEST_CASE("where filters compile to SQL with every name and literal bound", "[where]") {
  const mmu::SqlFilter f = mmu::compile_where("Z < 0.3 and SPECTYPE = 'GAL' or ra > 10 and object_id = 123",
                                              {"Z", "SPECTYPE"});
  for (const char* user_text : {"Z", "SPECTYPE", "0.3", "GAL", "123", "'"}) {
    INFO(user_text);
    CHECK(f.sql.find(user_text) == std::string::npos);
  }
  const std::vector<mmu::SqlValue> want = {std::string("Z"), 0.3, std::string("SPECTYPE"), std::string("GAL"), int64_t{10},
                                           std::string("123")};
  CHECK(f.params == want);
  CHECK(std::count(f.sql.begin(), f.sql.end(), '?') == 6);
}

TEST_CASE("where filters reject bad and hostile expressions, naming the column", "[where]") {
  Fixture fx;
  auto store = mmu::Store::open(fx.store);
  const std::string catalog = store->generation_path() + "/catalog.sqlite";
  const std::string before = file_hash(catalog);
  const std::vector<std::pair<std::string, std::vector<std::string>>> bad = {
      {"Z < 0.3; DROP TABLE objects", {"unexpected character ';'", "column 8"}},
      {"Z < 0.3 or 1=1 --", {"expected a column name", "found number 1", "column 12"}},
      {"Z < '0' OR '1'='1'", {"expected a column name", "column 12"}},
      {"SPECTYPE = 'GALAXY", {"not closed", "column 12"}},
      {"SPECTYPE = \"GALAXY' or 1=1", {"not closed", "column 12"}},
      {"(Z < 0.3", {"expected ')'", "end of expression", "column 9"}},
      {"Z < 0.3)", {"expected 'and', 'or'", "column 8"}},
      {"FOO < 3", {"unknown column 'FOO'", "column 1", "object_id, survey, subset, ra, dec, healpix", "SPECTYPE", "redshift"}},
      {"z < 1 and Redshift < 1", {"unknown column 'Redshift'", "column 11"}},
      {"Z < 0.3 ZERR", {"expected 'and', 'or'", "'ZERR'", "column 9"}},
      {"Z < 0.3 and", {"expected a column name", "end of expression"}},
      {"Z < abs(1)", {"expected a number or a quoted string", "'abs'", "column 5"}},
      {"Z in (select row from objects)", {"expected a number or a quoted string", "'select'", "column 7"}},
      {"abs(Z) < 1", {"unknown column 'abs'", "column 1"}},
      {"Z(1) < 3", {"expected a comparison", "column 2"}},
      {"Z <", {"end of expression", "column 4"}},
      {"Z", {"expected a comparison"}},
      {"ra < 'x'", {"'ra' is a number", "column 6"}},
      {"Z between 1 and 'a'", {"mixed numbers and strings", "column 17"}},
      {"Z > 1e999", {"out of range", "column 5"}},
      {"Z > 1e", {"exponent without digits", "column 6"}},
      {"Z < 0x10", {"unexpected 'x' in a number", "column 6"}},
      {"Z < 0.3 /* c */", {"unexpected character '/'", "column 9"}},
      {"Z is 3", {"expected 'null'", "column 6"}},
      {"Z - 1 < 3", {"expected a comparison", "column 3"}},
      {"and < 3", {"expected a column name"}},
      {"", {"--where is empty"}},
      {"   ", {"--where is empty"}},
      {std::string(60, '(') + "Z < 1" + std::string(60, ')'), {"nesting deeper than"}},
  };
  for (const auto& [where, parts] : bad) {
    INFO(where);
    try {
      mmu::rows_where(*store, where);
      FAIL("accepted");
    } catch (const mmu::Error& e) {
      CHECK(e.kind() == mmu::ErrorKind::kInvalidArgument);
      for (const std::string& p : parts) CHECK_THAT(e.what(), Catch::Contains(p));
    }
  }
  // Quotes inside a string literal are just characters of the literal.
  CHECK(mmu::rows_where(*store, "SPECTYPE = \"x' OR '1'='1\"").empty());
  CHECK(mmu::rows_where(*store, "SPECTYPE = \"'; DROP TABLE objects; --\"").empty());
  CHECK(mmu::rows_where(*store, "Z = 'x'' or ''1''=''1'").empty());
  CHECK(file_hash(catalog) == before);
  CHECK(mmu::Store::open(fx.store)->num_objects() == 76);
}

TEST_CASE("catalog columns are listed, and a format-1 store is told to rebuild", "[where]") {
  Fixture fx;
  auto store = mmu::Store::open(fx.store);
  const std::vector<std::string> want = {"object_id", "survey", "subset", "ra", "dec", "healpix", "FLAG", "SPECTYPE",
                                         "TARGETID", "Z", "ZERR", "ZWARN", "FLUX_R", "redshift", "spaxel_size_unit", "z"};
  std::vector<std::string> got = mmu::catalog_columns(*store);
  CHECK(std::vector<std::string>(got.begin(), got.begin() + 6) == mmu::builtin_columns());
  CHECK(std::set<std::string>(got.begin(), got.end()) == std::set<std::string>(want.begin(), want.end()));
  CHECK(got.size() == want.size());

  const std::string catalog = store->generation_path() + "/catalog.sqlite";
  REQUIRE(std::system(("/usr/bin/python3 -c \"import sqlite3; c=sqlite3.connect('" + catalog +
                       "'); c.execute('PRAGMA user_version=1'); c.commit()\"").c_str()) == 0);
  auto old = mmu::Store::open(fx.store);  // still readable
  CHECK(old->num_objects() == 76);
  CHECK(mmu::catalog_columns(*old) == mmu::builtin_columns());
  CHECK_THROWS_WITH(mmu::rows_where(*old, "ra > 0"),
                    Catch::Contains("format version 1") && Catch::Contains("rebuild") && Catch::Contains("mmu-index build"));
}

TEST_CASE("scalar catalog columns are read per object, roles and arrays left out", "[where][io]") {
  Fixture fx;
  std::map<std::string, mmu::ScalarColumn> cols;
  for (const mmu::SourceFile& f : mmu::discover_files({fx.dir / "data/alpha"}))
    for (auto& c : mmu::MmuFileReader(f).read_scalar_columns()) cols[c.name] = c;
  std::set<std::string> names;
  for (const auto& [n, c] : cols) names.insert(n);
  CHECK(names == std::set<std::string>{"FLAG", "SPECTYPE", "TARGETID", "Z", "ZERR", "ZWARN"});
  CHECK(cols["Z"].type == mmu::ScalarColumn::Type::kReal);
  CHECK(cols["Z"].present[3] == 0);  // NaN is no value
  CHECK(cols["Z"].reals[0] == 0.25);
  CHECK(cols["TARGETID"].integers[1] == (int64_t{1} << 60) + 1);
  CHECK(cols["SPECTYPE"].texts[3] == "O'X");
  CHECK(cols["FLAG"].type == mmu::ScalarColumn::Type::kInteger);

  const auto groups = mmu::discover_files({fx.dir / "data/manga"});
  REQUIRE(groups.size() == 1);
  std::map<std::string, mmu::ScalarColumn> g;
  for (auto& c : mmu::MmuFileReader(groups[0]).read_scalar_columns()) g[c.name] = c;
  REQUIRE(g.count("z"));
  CHECK(g["z"].present == std::vector<uint8_t>{1, 0, 1});
  CHECK(g["spaxel_size_unit"].texts == std::vector<std::string>(3, "arcsec"));
  CHECK(g.count("object_id") == 0);
}

"""The gallery of `mmu-search serve` in a real browser (Debian's headless
chromium driven by chromium-driver through python3-selenium), and the
endpoints it draws with, against independent computations: the result grid
against `mmu-search --format json` and `mmu-search hunt`, cutouts against
astropy's make_lupton_rgb of the h5py-read bands, spectra and light curves
against h5py reads, a PCA map against numpy's SVD, an id full of HTML
metacharacters shown as text, and a moved source file's placeholder.
Run: test_gallery.py --bin BUILD --tmp DIR [--screenshot PNG]
"""
import concurrent.futures
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CaseFailure, Env, case_list, need, run, run_cases  # noqa: E402
import layout_fixtures  # noqa: E402
import mmu_fixtures as fx  # noqa: E402
from space_reading import load_space  # noqa: E402

NASTY_ID = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">'q&amp;"
BANDS = [b"des-g", b"des-r", b"des-i", b"des-z"]
# The stated colour mapping (include/mmu/object_view.h): z,r,g -> R,G,B with
# the Legacy Survey viewer's scales, then Lupton et al. 2004 with Q 8, stretch 0.5.
SCALES = {"g": 6.0, "r": 3.4, "z": 2.2}
Q, STRETCH = 8, 0.5
MASKED = (255, 0, 255)

cases, case = case_list()


def write_tree(root):
    """Images (with g,r,i,z band names, masked pixels and the nasty id), a second image
    file (moved away after the build), spectra (two at image positions, for --link;
    a masked stretch; a Z column) and PLAsTiCC light curves."""
    ids = fx.image_ids(8)
    ids = np.array([NASTY_ID.encode()] + list(ids[1:]), dtype="S96")
    img = fx.image_datasets(8, seed=1, ids=ids)
    img["image_band"] = np.array([BANDS] * 8, dtype="S5")
    img["image_mask"][1, 20:40, 30:70] = False  # a masked patch on object 1
    img["image_array"][2, 1, 5, 5] = np.nan     # a non-finite pixel on object 2
    paths = {"images": fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), img)}
    other = fx.image_datasets(3, seed=5, ids=fx.image_ids(3, prefix="MOVED"), box=fx.OTHER_CELL_BOX, cell=fx.OTHER_CELL)
    other["image_band"] = np.array([BANDS] * 3, dtype="S5")
    paths["moved"] = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, cell=fx.OTHER_CELL), other)
    spec = fx.spectrum_datasets(6, seed=2)
    spec["ra"][:2], spec["dec"][:2] = img["ra"][1:3], img["dec"][1:3]
    spec["spectrum_mask"][0, 1000:1400] = True
    spec["spectrum_ivar"][0, 3000:3100] = 0
    spec["Z"] = np.linspace(0.05, 0.3, 6)
    paths["spectra"] = fx.write_mmu_file(fx.mmu_path(root, fx.SPECTRUM_SURVEY), spec)
    layout_fixtures.write_plasticc(root, {"objects": [], "files": [], "pairs": []}, np.random.default_rng(3))
    paths["lightcurves"] = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "plasticc")) for f in fs)[0]
    return paths


class Server:
    def __init__(self, search, store):
        self.proc = subprocess.Popen([search, "serve", "--store", store, "--port", "0"], stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], 30)
        line = self.proc.stderr.readline() if ready else ""
        need(line.startswith("serving store ") and "http://127.0.0.1:" in line, f"start line: {line!r}")
        self.base = "http://127.0.0.1:" + line.strip().rsplit(":", 1)[1]

    def get(self, path):
        """(status, headers, body bytes)."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)
        return self.proc.returncode


def object_path(kind, survey, oid, ext):
    return "/%s/%s/%s%s" % (kind, urllib.parse.quote(survey, safe=""), urllib.parse.quote(oid, safe=""), ext)


def decode_png(data):
    """(height, width, 3) uint8 of an 8-bit RGB PNG whose rows are all filter 0 (what the server writes)."""
    need(data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature")
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        need(zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], f"bad CRC in {kind}")
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            need((depth, colour) == (8, 2), f"PNG depth {depth} colour type {colour}, expected 8-bit RGB")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    need((raw[:, 0] == 0).all(), "a PNG row with a filter other than none")
    return raw[:, 1:].reshape(height, width, 3)


def expected_cutout(path, index):
    """astropy's make_lupton_rgb of the object's z, r, g bands, masked pixels magenta."""
    from astropy.visualization import make_lupton_rgb
    with h5py.File(path, "r") as f:
        im = f["image_array"][index].astype(np.float32)
        good = f["image_mask"][index]
    g, r, z = im[0] * np.float32(SCALES["g"]), im[1] * np.float32(SCALES["r"]), im[3] * np.float32(SCALES["z"])
    bad = ~good | ~np.isfinite(g) | ~np.isfinite(r) | ~np.isfinite(z)
    with np.errstate(invalid="ignore"):
        rgb = make_lupton_rgb(np.where(bad, 0, z), np.where(bad, 0, r), np.where(bad, 0, g), minimum=0,
                              stretch=STRETCH, Q=Q)
    rgb[bad] = MASKED
    return rgb, bad


def setup(env):
    a_bin = sys.argv[sys.argv.index("--bin") + 1]
    env.tmp = sys.argv[sys.argv.index("--tmp") + 1]
    env.screenshot = sys.argv[sys.argv.index("--screenshot") + 1] if "--screenshot" in sys.argv else None
    import shutil
    shutil.rmtree(env.tmp, ignore_errors=True)
    os.makedirs(env.tmp)
    env.index, env.search = os.path.join(a_bin, "mmu-index"), os.path.join(a_bin, "mmu-search")
    env.root, env.store = os.path.join(env.tmp, "mmu"), os.path.join(env.tmp, "store")
    # The browser starts (seconds) while the store is built.
    env.browser = concurrent.futures.ThreadPoolExecutor(1).submit(start_browser, env.tmp)
    env.paths = write_tree(env.root)
    run(env.index, "build", env.root, "--store", env.store, "--quiet")
    run(env.index, "xmatch", "--left", "legacysurvey", "--right", "desi", "--store", env.store, "--link")
    env.moved_to = env.paths["moved"] + ".away"
    os.rename(env.paths["moved"], env.moved_to)
    env.server = Server(env.search, env.store)
    env.driver = env.browser.result()


def start_browser(tmp):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise CaseFailure("python3-selenium is missing: run scripts/install-deps.sh as root")
    need(os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver"),
         "chromium / chromium-driver are missing: run scripts/install-deps.sh as root")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", "--user-data-dir=" + os.path.join(tmp, "chromium")):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver", log_path=os.path.join(tmp, "chromedriver.log")),
                            options=opts)


def cli_json(env, *args):
    return json.loads(run(env.search, "--store", env.store, *args, "--format", "json").stdout)


def open_page(env, query, cards):
    """Opens /?query and waits until `cards` cards show and every card's images and drawings are done."""
    env.driver.get(env.server.base + "/?" + query)
    deadline = time.time() + 20
    while time.time() < deadline:
        done = env.driver.execute_script(
            "const c = document.querySelectorAll('#grid .card');"
            "if (document.body.dataset.ready !== '1' || c.length !== arguments[0]) return false;"
            "for (const card of c) if (card.dataset.drawn !== '1') return false;"
            "return [...document.images].every((i) => i.complete);", cards)
        if done:
            return
        time.sleep(0.1)
    raise CaseFailure(f"/?{query}: the page did not show {cards} finished cards in 20 s; status: " +
                      env.driver.find_element("id", "status").text)


def grid(env):
    return env.driver.execute_script(
        "return [...document.querySelectorAll('#grid .card')].map((c) => ({id: c.dataset.objectId, survey: c.dataset.survey,"
        " rank: c.dataset.rank, shown: c.querySelector('.oid').textContent, note: c.querySelector('.note').textContent,"
        " imgs: [...c.querySelectorAll('img')].map((i) => [i.naturalWidth, i.naturalHeight]),"
        " spectra: c.querySelectorAll('svg.spectrum').length, curves: c.querySelectorAll('svg.lightcurve').length}))")


def console_errors(env):
    return [e for e in env.driver.get_log("browser") if e.get("level") == "SEVERE"]


@case("grid by id equals --like --format json, cutouts decoded, no console errors")
def grid_by_id(env):
    oid = fx.image_ids(8)[3].decode()
    want = cli_json(env, "--like", oid, "--k", "10")
    open_page(env, "like=" + urllib.parse.quote(oid) + "&k=10", 11)
    got = grid(env)
    need(got[0]["id"] == oid and got[0]["rank"] == "query", f"first card {got[0]} is not the query {oid}")
    need([(g["id"], g["survey"], g["rank"]) for g in got[1:]] ==
         [(r["object_id"], r["survey"], str(r["rank"])) for r in want["results"]],
         f"grid {[g['id'] for g in got[1:]]} vs CLI {[r['object_id'] for r in want['results']]}")
    moved = [g for g in got if g["id"].startswith("MOVED")]
    for g in got:
        if g in moved:
            continue
        need(g["imgs"] and all(w == fx.IMAGE_SIZE and h == fx.IMAGE_SIZE for w, h in g["imgs"]),
             f"card {g['id']}: images {g['imgs']}, expected one {fx.IMAGE_SIZE}x{fx.IMAGE_SIZE} cutout")
    spaces = json.loads(env.server.get("/spaces")[2])["spaces"]
    options = env.driver.execute_script("return [...document.querySelectorAll('#space option')].map((o) => [o.value, o.text])")
    need([o[0] for o in options] == [""] + [sp["name"] for sp in spaces], f"space choices {options} vs /spaces")
    need(all(("the default for" in o[1]) == sp["default"] for o, sp in zip(options[1:], spaces)),
         f"space choices {options}: the default per modality is not marked as /spaces says")
    errors = console_errors(env)
    need(not errors, f"console errors: {errors}")
    if env.screenshot:
        env.driver.save_screenshot(env.screenshot)
    env.driver.save_screenshot(os.path.join(env.tmp, "gallery.png"))


@case("cutout PNG equals astropy's Lupton rendering of the h5py bands; masked pixels magenta")
def cutout_colours(env):
    for i in range(1, 8):
        oid = fx.image_ids(8)[i].decode()
        status, headers, body = env.server.get(object_path("cutout", "legacysurvey", oid, ".png"))
        need(status == 200 and headers["Content-Type"] == "image/png", f"{oid}: HTTP {status} {headers['Content-Type']}")
        need(headers.get("X-MMU-Note") is None, f"{oid}: unexpected note {headers.get('X-MMU-Note')}")
        got = decode_png(body).astype(int)
        want, bad = expected_cutout(env.paths["images"], i)
        diff = np.abs(got - want.astype(int))
        need(diff.max() <= 1 and (diff == 0).mean() > 0.999,
             f"{oid}: max colour difference {diff.max()}, {(diff > 0).sum()} channels differ from astropy")
        need((got[bad] == MASKED).all(), f"{oid}: masked pixels not magenta")
        need(i not in (1, 2) or bad.sum() > 0, f"{oid}: the fixture's masked pixels are missing")
        need(got.std() > 5, f"{oid}: a flat image")
    oid = fx.image_ids(8)[4].decode()
    full = decode_png(env.server.get(object_path("cutout", "legacysurvey", oid, ".png"))[2])
    small = decode_png(env.server.get(object_path("cutout", "legacysurvey", oid, ".png") + "?size=64")[2])
    pick = ((np.arange(64) + 0.5) * fx.IMAGE_SIZE / 64).astype(int)
    need(small.shape == (64, 64, 3) and (small == full[pick][:, pick]).all(), "size=64 is not the nearest-neighbour sample")
    for bad_size in ("8", "5000", "x", "-3"):
        status, _, body = env.server.get(object_path("cutout", "legacysurvey", oid, ".png") + "?size=" + bad_size)
        need(status == 400 and "size" in json.loads(body)["error"], f"size={bad_size}: HTTP {status} {body[:100]}")


@case("spectrum and light-curve endpoints equal h5py reads")
def spectrum_lightcurve(env):
    with h5py.File(env.paths["spectra"], "r") as f:
        for i in (0, 3):
            oid = str(f["object_id"][i])
            status, _, body = env.server.get(object_path("spectrum", "desi", oid, ".json"))
            need(status == 200, f"spectrum {oid}: HTTP {status} {body[:200]}")
            s = json.loads(body)
            lam, flux = f["spectrum_lambda"][i], f["spectrum_flux"][i]
            mask = f["spectrum_mask"][i] | (f["spectrum_ivar"][i] <= 0) | (lam <= 0)
            need(np.array_equal(np.array(s["wavelength"], np.float32), lam), f"spectrum {oid}: wavelength")
            need(np.array_equal(np.array(s["flux"], np.float32), flux), f"spectrum {oid}: flux")
            need(np.array_equal(np.array(s["mask"], bool), mask), f"spectrum {oid}: mask")
            need(i != 0 or mask.sum() == 500, f"spectrum {oid}: the fixture's 500 masked pixels")
            need(abs(s["redshift"] - float(f["Z"][i])) < 1e-12, f"spectrum {oid}: redshift {s['redshift']} vs {f['Z'][i]}")
            # ?points=N (what the cards ask): N bins of consecutive pixels, mean wavelength, mean usable flux.
            bins = 600
            status, _, body = env.server.get(object_path("spectrum", "desi", oid, ".json") + "?points=%d" % bins)
            need(status == 200, f"binned spectrum {oid}: HTTP {status} {body[:200]}")
            b = json.loads(body)
            n = lam.size
            good = ~mask & np.isfinite(flux)
            edges = [(k * n // bins, (k + 1) * n // bins) for k in range(bins)]
            want_lam = np.array([lam[a:e].astype(np.float64).mean() for a, e in edges])
            want_mask = np.array([not good[a:e].any() for a, e in edges])
            want_flux = np.array([flux[a:e][good[a:e]].astype(np.float64).mean() if good[a:e].any() else 0.0
                                  for a, e in edges])
            need(len(b["flux"]) == bins and np.allclose(b["wavelength"], want_lam, rtol=1e-12),
                 f"binned spectrum {oid}: wavelength")
            need(np.array_equal(np.array(b["mask"], bool), want_mask), f"binned spectrum {oid}: mask")
            need(np.allclose(np.array(b["flux"])[~want_mask], want_flux[~want_mask], rtol=1e-9, atol=1e-12),
                 f"binned spectrum {oid}: flux")
            need(i != 0 or want_mask.any(), f"binned spectrum {oid}: the fixture's masked stretch gives masked bins")
            status, _, body = env.server.get(object_path("spectrum", "desi", oid, ".json") + "?points=x")
            need(status == 400 and "points" in json.loads(body)["error"], f"points=x: HTTP {status} {body[:200]}")
        status, _, body = env.server.get(object_path("lightcurve", "desi", oid, ".json"))
        need(status == 404 and "lightcurve" in json.loads(body)["error"], f"light curve of a spectrum: HTTP {status}")
    with h5py.File(env.paths["lightcurves"], "r") as f:
        for i in range(len(f["object_id"])):
            oid = str(f["object_id"][i])
            status, _, body = env.server.get(object_path("lightcurve", "plasticc", oid, ".json"))
            need(status == 200, f"light curve {oid}: HTTP {status} {body[:200]}")
            lc = json.loads(body)
            need(len(lc["bands"]) == f["lightcurve"].shape[1], f"light curve {oid}: {len(lc['bands'])} bands")
            for b, band in enumerate(lc["bands"]):
                t, v, e = f["lightcurve"][i, b]
                real = (t != 0) | (v != 0) | (e != 0)  # the fixture pads with zeros at the end only
                for name, col in (("time", t), ("value", v), ("error", e)):
                    need(np.array_equal(np.array(band[name], np.float32), col[real].astype(np.float32)),
                         f"light curve {oid} band {b}: {name}")
    status, _, body = env.server.get(object_path("spectrum", "legacysurvey", "no-such-id", ".json"))
    need(status == 404 and "no-such-id" in json.loads(body)["error"], f"unknown object: HTTP {status}")


@case("an id with HTML metacharacters is shown as text, never run")
def escaping(env):
    open_page(env, "like=" + urllib.parse.quote(NASTY_ID) + "&survey=legacysurvey&k=3", 4)
    got = grid(env)
    need(got[0]["shown"] == NASTY_ID and got[0]["id"] == NASTY_ID, f"query card shows {got[0]['shown']!r}")
    need(env.driver.execute_script("return window.__xss === undefined"), "the id's markup ran")
    need(env.driver.execute_script("return document.scripts.length") == 1, "the id's markup added a script")
    need(env.driver.execute_script("return document.querySelectorAll('#grid img[src=x]').length") == 0,
         "the id's markup added an image")
    need(not console_errors(env), f"console errors: {console_errors(env)}")


@case("a moved source file gives a placeholder naming the file, never a 500")
def moved_file(env):
    oid = "MOVED-000002"
    status, headers, body = env.server.get(object_path("cutout", "legacysurvey", oid, ".png"))
    need(status == 200 and headers["Content-Type"] == "image/png", f"moved cutout: HTTP {status}")
    note = urllib.parse.unquote(headers.get("X-MMU-Note", ""))
    need(env.paths["moved"] in note, f"note {note!r} does not name {env.paths['moved']}")
    ph = decode_png(body)
    need(ph.shape[2] == 3 and ph.shape[0] > 0, "placeholder is not an image")
    open_page(env, "like=" + oid + "&k=3", 4)
    got = grid(env)
    need(got[0]["id"] == oid and env.paths["moved"] in got[0]["note"], f"query card note {got[0]['note']!r}")
    need(got[0]["imgs"] and got[0]["imgs"][0][0] > 0, "the placeholder image did not load")
    need(not console_errors(env), f"console errors: {console_errors(env)}")


def post(server, path, body):
    """(status, parsed JSON reply) of a POST with a JSON body."""
    req = urllib.request.Request(server.base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@case("POST /cutouts: a grid's cutouts read by file equal astropy's and GET /cutout's; placeholders and errors in place")
def cutout_batch(env):
    import base64
    ids = [i.decode() for i in fx.image_ids(8)]
    ids[0] = NASTY_ID
    spectrum_id = json.loads(env.server.get("/map/spectrum.json")[2])["points"][0]["object_id"]
    # Rows out of order and one twice (one file: read as runs), the moved file, an object without an
    # image, one the store lacks.
    order = [5, 3, 4, 7, 0, 1, 2, 6, 4]
    wanted = [("legacysurvey", ids[i]) for i in order] + [
        ("legacysurvey", "MOVED-000002"), ("desi", spectrum_id), ("legacysurvey", "no-such-id")]
    body = {"objects": [{"survey": s, "object_id": o} for s, o in wanted]}
    fresh = Server(env.search, env.store)  # nothing cached: every image is read by the batch
    try:
        for size in (0, 64):
            status, got = post(fresh, "/cutouts", dict(body, size=size) if size else body)
            need(status == 200 and len(got["cutouts"]) == len(wanted), f"size {size}: HTTP {status} {str(got)[:200]}")
            for (survey, oid), c, k in zip(wanted, got["cutouts"], order + [None] * 3):
                need((c["survey"], c["object_id"]) == (survey, oid), f"size {size}: {c['object_id']!r} out of place")
                if oid == "no-such-id":
                    need("no-such-id" in c["error"] and "png" not in c, f"unknown object: {c}")
                    continue
                png = base64.b64decode(c["png"])
                status, headers, single = env.server.get(object_path("cutout", survey, oid, ".png") +
                                                         ("?size=%d" % size if size else ""))
                need(status == 200 and png == single, f"size {size}, {oid!r}: batch PNG differs from GET /cutout's")
                need(c["note"] == urllib.parse.unquote(headers.get("X-MMU-Note", "")), f"{oid!r}: note {c['note']!r}")
                if oid == "MOVED-000002":
                    need(env.paths["moved"] in c["note"], f"moved: note {c['note']!r}")
                elif survey == "desi":
                    need("has no image" in c["note"], f"spectrum object: note {c['note']!r}")
                elif size == 0 and k not in (0, 1, 2):  # the object_view's own colours (fixture ids 0-2 have masks, NaN)
                    want, _ = expected_cutout(env.paths["images"], k)
                    diff = np.abs(decode_png(png).astype(int) - want.astype(int))
                    need(diff.max() <= 1 and (diff == 0).mean() > 0.999, f"{oid}: differs from astropy by {diff.max()}")
        status, got = post(fresh, "/cutouts", {"objects": [{"survey": "legacysurvey"}]})
        need(status == 400 and "objects" in got["error"], f"an object without object_id: HTTP {status} {got}")
        status, got = post(fresh, "/cutouts", dict(body, size=8))
        need(status == 400 and "size" in got["error"], f"size 8: HTTP {status} {got}")
        many = {"objects": body["objects"] * 10, "size": 1024}  # 120 x 3 MB: refused before drawing any
        status, got = post(fresh, "/cutouts", many)
        need(status == 400 and "at most 6 cutouts of 1024 pixels" in got["error"], f"120 at 1024 px: HTTP {status} {got}")
        status, got = post(fresh, "/cutouts", {"objects": body["objects"] * 8})  # 96: within the limit
        need(status == 200 and len(got["cutouts"]) == 96, f"96 cutouts: HTTP {status}")
        # POST /objects: GET /object's answer for each, in order.
        status, got = post(fresh, "/objects", body)
        need(status == 200 and len(got["objects"]) == len(wanted), f"/objects: HTTP {status}")
        for (survey, oid), o in zip(wanted, got["objects"]):
            status, _, single = env.server.get(object_path("object", survey, oid, ".json"))
            if oid == "no-such-id":
                need(status == 404 and o["error"] == json.loads(single)["error"], f"/objects unknown: {o}")
            else:
                need(status == 200 and o == json.loads(single), f"/objects {oid!r}: {o} != {single[:200]}")
    finally:
        need(fresh.stop() == 0, "the server did not stop cleanly")


@case("a linked image shows its spectrum too")
def linked(env):
    oid = fx.image_ids(8)[1].decode()
    open_page(env, "like=" + oid + "&k=2", 3)
    q = grid(env)[0]
    need(q["id"] == oid and len(q["imgs"]) == 1 and q["spectra"] == 1,
         f"linked {oid}: {len(q['imgs'])} images, {q['spectra']} spectra (expected 1 and 1)")
    masked = env.driver.execute_script("return document.querySelector('#grid .card svg.spectrum rect.masked') !== null")
    need(masked, "the linked spectrum's masked stretch is not shaded")


@case("a light curve is drawn as its points with error bars")
def light_curve_card(env):
    with h5py.File(env.paths["lightcurves"], "r") as f:
        oid = str(f["object_id"][0])
        points = int(((f["lightcurve"][0, :, 0] != 0) | (f["lightcurve"][0, :, 1] != 0) |
                      (f["lightcurve"][0, :, 2] != 0)).sum())
    open_page(env, "like=" + oid + "&survey=plasticc&k=2", 3)
    q = grid(env)[0]
    need(q["id"] == oid and q["curves"] == 1, f"light curve {oid}: {q['curves']} drawings")
    dots, bars = env.driver.execute_script(
        "const s = document.querySelector('#grid .card svg.lightcurve');"
        "return [s.querySelectorAll('circle').length, s.querySelectorAll('line').length]")
    need(dots == points and bars == points, f"light curve {oid}: {dots} points, {bars} error bars; h5py has {points}")


@case("light-curve bands named as the file names them (cfa/csp 'bands'), numbered where it names none (plasticc)")
def light_curve_band_names(env):
    with h5py.File(env.paths["lightcurves"], "r") as f:
        oid = str(f["object_id"][0])
    lc = json.loads(env.server.get(object_path("lightcurve", "plasticc", oid, ".json"))[2])
    need(lc["bands"] and all(b["name"] is None for b in lc["bands"]), f"plasticc names its bands? {lc['bands'][0]}")
    root, store = os.path.join(env.tmp, "sn"), os.path.join(env.tmp, "sn-store")
    manifest = {"objects": [], "files": [], "pairs": []}
    layout_fixtures.write_sn(root, manifest, np.random.default_rng(4))
    run(env.index, "build", root, "--store", store, "--quiet")
    sn = Server(env.search, store)
    try:
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".hdf5"))
        need(len(files) == 4, f"{len(files)} SN files")
        for path in files:
            with h5py.File(path, "r") as f:
                oid, names = f["object_id"][()].decode(), [b.decode() for b in f["bands"][()]]
            survey = "cfa" if "cfa" in path else "csp"
            status, _, body = sn.get(object_path("lightcurve", survey, oid, ".json"))
            need(status == 200, f"{oid}: HTTP {status} {body[:200]}")
            got = [b["name"] for b in json.loads(body)["bands"]]
            need(got == names, f"{oid}: bands named {got}, the file {names}")
        page = type("E", (), {})()
        page.driver, page.server = env.driver, sn
        open_page(page, "like=" + oid + "&survey=" + survey + "&k=1", 2)
        shown = env.driver.execute_script(
            "return [...document.querySelector('#grid .card svg.lightcurve').querySelectorAll('tspan.band')]"
            ".map((t) => t.textContent.trim())")
        need(shown == names, f"{oid}: the card's legend {shown}, the file {names}")
    finally:
        need(sn.stop() == 0, "the server did not stop cleanly")


@case("two positives and 'more like these' give `mmu-search hunt`'s ranking")
def hunt_from_page(env):
    oid = fx.image_ids(8)[5].decode()
    open_page(env, "like=" + oid + "&k=6", 7)
    got = grid(env)
    picks = [got[1]["id"], got[3]["id"]]
    env.driver.execute_script(
        "const c = document.querySelectorAll('#grid .card'); c[1].querySelector('.marks button').click();"
        "c[3].querySelector('.marks button').click(); document.getElementById('hunt').click();")
    ids_file = os.path.join(env.tmp, "positives.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(picks) + "\n")
    want = json.loads(run(env.search, "hunt", "--store", env.store, "--positives", ids_file, "--k", "6",
                          "--format", "json").stdout)
    deadline = time.time() + 20
    while time.time() < deadline and "hunt" not in env.driver.current_url:
        time.sleep(0.05)
    open_page(env, env.driver.current_url.split("?", 1)[1], len(want["results"]))
    got = grid(env)
    need([(g["id"], g["rank"]) for g in got] == [(r["object_id"], str(r["rank"])) for r in want["results"]],
         f"page hunt {[g['id'] for g in got]} vs CLI {[r['object_id'] for r in want['results']]}")
    need(not console_errors(env), f"console errors: {console_errors(env)}")


@case("map: the image space on its first two principal components (numpy SVD)")
def space_map(env):
    status, _, body = env.server.get("/map/image.json")
    need(status == 200, f"map: HTTP {status} {body[:200]}")
    m = json.loads(body)
    vecs, meta = load_space(env.store, "image")
    need([p["object_id"] for p in m["points"]] == [r[0] for r in meta], "map points are not the space's objects")
    centred = vecs - vecs.mean(axis=0)
    want = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    for axis, name in enumerate("xy"):
        got = np.array([p[name] for p in m["points"]])
        corr = abs(np.corrcoef(got, want[:, axis])[0, 1])
        need(corr > 0.999 and np.allclose(np.abs(got), np.abs(want[:, axis]), atol=1e-4),
             f"map {name}: correlation {corr} with sklearn's component {axis}")
    status, _, _ = env.server.get("/map/no-such-space.json")
    need(status == 404, f"map of an unknown space: HTTP {status}")
    # Coloured by a catalogue column: each spectrum's Z as h5py reads it.
    status, _, body = env.server.get("/map/spectrum.json?colour=Z")
    need(status == 200, f"map coloured by Z: HTTP {status} {body[:200]}")
    with h5py.File(env.paths["spectra"], "r") as f:
        z = {str(i): float(v) for i, v in zip(f["object_id"][:], f["Z"][:])}
    got = {p["object_id"]: p["value"] for p in json.loads(body)["points"]}
    need(got == z, f"map values {got} vs h5py Z {z}")
    status, _, _ = env.server.get("/map/spectrum.json?colour=NO_SUCH_COLUMN")
    need(status == 404, f"map coloured by an unknown column: HTTP {status}")
    # In the page: the panel draws one point per object, coloured by Z on request.
    open_page(env, "like=" + str(next(iter(z))) + "&k=2", 3)
    env.driver.execute_script("document.getElementById('map-toggle').click()")
    circles = lambda: env.driver.execute_script(  # noqa: E731
        "return [...document.querySelectorAll('#map circle')].map((c) => c.getAttribute('fill'))")
    deadline = time.time() + 10
    while time.time() < deadline and len(circles()) != len(z):
        time.sleep(0.1)
    need(len(circles()) == len(z), f"map panel: {len(circles())} points, the space has {len(z)}")
    env.driver.execute_script("document.getElementById('map-colour').value = 'Z';"
                              "document.getElementById('map-redraw').click()")
    deadline = time.time() + 10
    while time.time() < deadline and "Z from" not in env.driver.find_element("id", "map-status").text:
        time.sleep(0.1)
    need(len(set(circles())) == len(z), f"coloured by Z: {len(set(circles()))} colours for {len(z)} distinct values")
    need(not console_errors(env), f"console errors: {console_errors(env)}")


@case("a query by position from the form equals --near; the filters reach the query")
def near_form(env):
    with h5py.File(env.paths["images"], "r") as f:
        ra, dec = float(f["ra"][6]) + 1e-4, float(f["dec"][6])
    cone = "%r,%r,0.3" % (ra, dec)
    want = cli_json(env, "--near", "%r,%r" % (ra, dec), "--radius", "5arcsec", "--k", "4", "--cone", cone + "deg")
    env.driver.get(env.server.base + "/")
    env.driver.execute_script(
        "document.getElementById('q').value = arguments[0]; document.getElementById('k').value = '4';"
        "document.getElementById('cone').value = arguments[1];"
        "document.getElementById('query-form').requestSubmit()", "%r,%r,5" % (ra, dec), cone)
    deadline = time.time() + 10
    while time.time() < deadline and "near=" not in env.driver.current_url:
        time.sleep(0.05)
    need("cone=" in env.driver.current_url, f"the view's URL {env.driver.current_url} lacks the cone")
    open_page(env, env.driver.current_url.split("?", 1)[1], 1 + len(want["results"]))
    got = grid(env)
    need(got[0]["id"] == want["query"]["object_id"] == fx.image_ids(8)[6].decode(),
         f"nearest object {got[0]['id']} vs CLI {want['query']['object_id']}")
    need([g["id"] for g in got[1:]] == [r["object_id"] for r in want["results"]],
         f"grid {[g['id'] for g in got[1:]]} vs CLI {[r['object_id'] for r in want['results']]}")


@case("the outliers view equals `mmu-search hunt --outliers`")
def outliers_view(env):
    want = json.loads(run(env.search, "hunt", "--store", env.store, "--outliers", "--space", "image", "--k", "5",
                          "--format", "json").stdout)
    open_page(env, "outliers=1&space=image&k=5", len(want["results"]))
    got = grid(env)
    need([(g["id"], g["rank"]) for g in got] == [(r["object_id"], str(r["rank"])) for r in want["results"]],
         f"page outliers {[g['id'] for g in got]} vs CLI {[r['object_id'] for r in want['results']]}")
    # "download CSV": the list as the page saves it (the blob handed to the download link).
    csv_text = env.driver.execute_async_script(
        "const done = arguments[0]; const make = URL.createObjectURL;"
        "URL.createObjectURL = (b) => { URL.createObjectURL = make; b.text().then(done); return make(b); };"
        "document.getElementById('csv').click();")
    import csv as csvlib
    rows = list(csvlib.DictReader(csv_text.splitlines()))
    need([(r["rank"], r["object_id"], r["score"]) for r in rows] ==
         [(str(r["rank"]), r["object_id"], str(r["score"])) for r in want["results"]],
         f"CSV {rows[:2]} vs CLI {want['results'][:2]}")


@case("a source file changed since the build gives a note naming it (last: it touches a file)")
def changed_file(env):
    path = env.paths["lightcurves"]
    st = os.stat(path)
    with h5py.File(path, "r") as f:
        oid = str(f["object_id"][1])
    try:
        os.utime(path, (st.st_atime, st.st_mtime + 100))
        status, _, body = env.server.get(object_path("lightcurve", "plasticc", oid, ".json"))
        lc = json.loads(body)
        need(status == 200 and path in lc["note"] and "changed since" in lc["note"] and "bands" not in lc,
             f"changed file: HTTP {status} {lc}")
    finally:
        os.utime(path, (st.st_atime, st.st_mtime))
    status, _, body = env.server.get(object_path("lightcurve", "plasticc", oid, ".json"))
    need(status == 200 and json.loads(body)["note"] == "", "the file restored: the light curve is drawn again")


def main():
    env = Env()
    env.server = env.driver = env.browser = None
    try:
        return run_cases(cases, env, setup)
    finally:
        if env.driver is None and env.browser is not None and env.browser.exception() is None:
            env.driver = env.browser.result()  # setup failed after starting it
        if env.driver is not None:
            env.driver.quit()
        if env.server is not None:
            code = env.server.stop()
            if code != 0:
                print(f"FAIL the server exited with {code} on SIGTERM")
                return 1  # noqa: B012


if __name__ == "__main__":
    sys.exit(main())

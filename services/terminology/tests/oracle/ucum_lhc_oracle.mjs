// Asks the reference implementation @lhncbc/ucum-lhc for its answers on our cases.
// Run from a folder where the package is installed (see README.md beside this file):
//   node ucum_lhc_oracle.mjs > ucum_lhc_cases.json
import { createRequire } from "node:module";

// ucum-lhc logs some failures with console.log; keep stdout for the JSON.
console.log = (...args) => console.error(...args);
const require = createRequire(process.cwd() + "/");
const ucum = require("@lhncbc/ucum-lhc");
const pkg = require("@lhncbc/ucum-lhc/package.json");
const utils = ucum.UcumLhcUtils.getInstance();

// [value, from, to] or [value, from, to, molecularWeight]
const conversions = [
  // lengths, masses, volumes (metric and customary)
  [1, "[in_i]", "cm"], [1, "[ft_i]", "m"], [1, "[mi_i]", "km"], [1, "[yd_i]", "m"],
  [1, "[nmi_i]", "m"], [1, "[ft_us]", "m"], [1, "[fur_us]", "m"], [1, "[in_br]", "cm"],
  [1, "[lb_av]", "g"], [1, "[oz_av]", "g"], [1, "[stone_av]", "kg"], [1, "[gr]", "mg"],
  [1, "[lb_tr]", "g"], [1, "[oz_tr]", "g"], [150, "[lb_av]", "kg"], [70, "kg", "[lb_av]"],
  [1, "t", "kg"], [1, "u", "g"], [5, "mg", "ug"], [1, "ng", "pg"],
  [1, "L", "mL"], [1, "l", "dL"], [250, "mL", "L"], [1, "[gal_us]", "L"], [1, "[gal_br]", "L"],
  [1, "[foz_us]", "mL"], [1, "[pt_us]", "mL"], [1, "[qt_us]", "L"], [1, "[cup_us]", "mL"],
  [1, "[tsp_us]", "mL"], [1, "[tbs_us]", "mL"], [1, "[tsp_m]", "mL"], [1, "[drp]", "mL"],
  [1, "m3", "L"], [1, "cm3", "mL"], [1, "[cin_i]", "cm3"], [1, "fL", "um3"], [1, "ar", "m2"],
  [1, "[acr_us]", "m2"], [1, "[sft_i]", "cm2"], [1, "Ao", "nm"], [1, "[mil_i]", "mm"],
  [180, "cm", "[ft_i]"], [70, "[in_i]", "m"], [1, "[smoot]", "m"], [1, "AU", "km"],
  // time and rates
  [1, "h", "min"], [1, "d", "s"], [1, "wk", "h"], [1, "a", "d"], [1, "mo", "d"], [1, "a_t", "d"],
  [72, "/min", "Hz"], [1, "Hz", "/min"], [60, "/min", "/h"], [1, "/s", "/min"],
  [15, "mm/h", "mm/min"], [5, "L/min", "mL/s"], [100, "mL/h", "mL/min"],
  [1, "{beats}/min", "/min"], [2, "{breaths}/min", "/h"], [1, "km/h", "m/s"], [10, "m/s", "km/h"],
  [1, "[kn_i]", "km/h"], [1, "[mi_i]/h", "km/h"],
  // pressure
  [120, "mm[Hg]", "kPa"], [1, "kPa", "mm[Hg]"], [1, "atm", "mm[Hg]"], [1, "atm", "Pa"],
  [1, "bar", "kPa"], [10, "cm[H2O]", "mm[Hg]"], [1, "[psi]", "kPa"], [1, "[in_i'Hg]", "kPa"],
  [30, "cm[H2O]", "kPa"], [1, "att", "kPa"], [760, "mm[Hg]", "atm"],
  // temperature (special units)
  [37, "Cel", "[degF]"], [98.6, "[degF]", "Cel"], [0, "Cel", "K"], [300, "K", "Cel"],
  [-40, "Cel", "[degF]"], [212, "[degF]", "K"], [100, "Cel", "[degRe]"], [80, "[degRe]", "Cel"],
  [491.67, "[degR]", "K"], [36.6, "Cel", "mK"], [310.15, "K", "[degF]"], [0, "[degF]", "Cel"],
  [25, "Cel", "Cel"], [1, "mCel", "Cel"],
  // chemistry: pH, levels
  [7.4, "[pH]", "mol/L"], [1e-7, "mol/L", "[pH]"], [0.00004, "mmol/L", "[pH]"],
  [20, "dB", "B"], [1, "B", "dB"],
  // energy, power, force
  [1, "kcal", "kJ"], [1, "[Cal]", "kJ"], [2000, "[Cal]", "MJ"], [1, "cal_IT", "J"],
  [1, "J", "cal"], [1, "[Btu_IT]", "kJ"], [1, "eV", "J"], [1, "[HP]", "W"], [1, "W", "J/s"],
  [1, "N", "dyn"], [1, "kgf", "N"], [1, "[lbf_av]", "N"], [1, "erg", "J"],
  // lab concentrations (ratio)
  [1, "mg/dL", "g/L"], [1, "g/dL", "g/L"], [1, "mg/dL", "mg/L"], [1, "ug/mL", "mg/L"],
  [1, "ng/mL", "ug/L"], [1, "pg/mL", "ng/L"], [1, "g/L", "mg/dL"], [1, "mmol/L", "umol/L"],
  [1, "umol/L", "nmol/L"], [1, "pmol/L", "nmol/L"], [1, "mol/m3", "mmol/L"], [1, "g%", "g/dL"],
  [1, "mmol/mol", "%"], [48, "mmol/mol", "%"], [6.5, "%", "mmol/mol"], [1, "%", "[ppth]"],
  [1, "[ppm]", "%"], [1, "meq/L", "mmol/L"], [1, "mosm/kg", "osm/kg"], [1, "U/L", "kat/L"],
  [1, "U/L", "ukat/L"], [1, "ukat/L", "U/L"], [1, "kat", "mol/s"],
  // cell counts and factors
  [1, "10*9/L", "/nL"], [1, "10*3/uL", "10*9/L"], [5.2, "10*12/L", "10*6/uL"],
  [1, "10^9/L", "10*9/L"], [4500, "/uL", "10*9/L"], [1, "10*6/mL", "/uL"],
  [1, "{cells}/uL", "/uL"], [1, "10*3/mm3", "10*9/L"], [1, "1000", "1"], [1, "10*3", "1"],
  [1, "10*-3", "1"], [1, "/[HPF]", "/[LPF]"],
  // clearance with annotations
  [90, "mL/min/{1.73_m2}", "mL/s/{1.73_m2}"], [1, "mL/min", "L/h"], [1, "mL/(min.{1.73_m2})", "mL/min"],
  // arbitrary units
  [1, "[IU]/L", "m[IU]/mL"], [1, "m[IU]/mL", "[IU]/L"], [1, "[IU]", "[iU]"], [1, "k[IU]/L", "[IU]/mL"],
  [1, "[arb'U]/mL", "[arb'U]/L"], [1, "[IU]/L", "[arb'U]/L"], [1, "[IU]/L", "U/L"],
  [1, "[CFU]/mL", "[CFU]/L"], [1, "[IU]/L", "/L"],
  // angles, misc
  [1, "deg", "rad"], [1, "circ", "deg"], [60, "'", "deg"], [1, "sr", "rad2"], [1, "By", "bit"],
  [1, "Ci", "Bq"], [1, "Gy", "RAD"], [1, "Sv", "REM"], [1, "G", "T"], [1, "[pi]", "1"],
  // not commensurable or invalid
  [1, "mg", "mL"], [1, "Cel", "m"], [1, "kg", "m"], [1, "mmHg", "kPa"], [1, "furlongs", "m"],
  [1, "mg/dl/", "mg/dL"], [1, "Cel/h", "K/h"],
  // molar mass conversions (glucose 180.156 g/mol, creatinine 113.12 g/mol, cholesterol 386.65 g/mol)
  [100, "mg/dL", "mmol/L", 180.156], [5.55, "mmol/L", "mg/dL", 180.156],
  [1, "mg/dL", "umol/L", 113.12], [88.4, "umol/L", "mg/dL", 113.12],
  [200, "mg/dL", "mmol/L", 386.65], [5.2, "mmol/L", "mg/dL", 386.65],
  [1, "g", "mol", 18.015], [1, "mmol", "mg", 180.156], [1, "g/L", "mmol/L", 180.156],
  [1, "mmol/L", "g/L", 180.156], [1, "ug/mL", "umol/L", 151.163], [1, "nmol/L", "ng/mL", 300.4],
  [1, "mg/dL", "mmol/L"], [1, "mg", "mmol/L", 180.156], [48, "mmol/mol", "%", 180.156],
  [1, "Cel", "mol", 18.015],
];

const validations = [
  "m", "mg/dL", "mg/dl", "mmol/L", "umol/L", "10*9/L", "10^9/L", "10*3/uL", "/min", "{beats}/min",
  "mm[Hg]", "cm[H2O]", "Cel", "[degF]", "[IU]/L", "m[IU]/mL", "[arb'U]", "%", "fL", "pg",
  "meq/L", "kg", "cm", "[in_i]", "[lb_av]", "mL/min/{1.73_m2}", "ng/mL", "pmol/L", "s", "mm/h",
  "kg/m2", "m2", "s-1", "cm3", "kg.m/s2", "(kg.m)/s2", "kg.m.s-2", "10*-3", "1000", "1",
  "{cells}", "{cells}/uL", "mg{creat}/dL", "mL/min", "kcal/d", "ug/(kg.min)", "/[HPF]", "[pH]",
  "dB", "mCel", "kat/L", "U/L", "g%", "mmol/mol", "[ppm]", "'", "''", "10*", "10^", "[pi]",
  "furlongs", "mg/dl/", "10**", "mmHg", "Cel.m", "Cel/h", "abc", "", "mg//dL", "(mg/dL",
  "mg/dL)", "m2.", "/", "IU/L", "mEq/L", "bpm", "sec", "hr", "degF", "kgm", "mM", "k[IU]",
  "[fur_us]", "ms", "Ms", "mmol/L{x}", "{a b}", "m-2", "m+2", "cal_[15]", "B[10.nV]",
  "[m/s2/Hz^(1/2)]", "10{cells}", "2.m", "m 2", "kg/m 2", "cm/s2", "dam", "daL",
  "[iU]", "kg{total}", "Cel{x}", "/Cel", "Cel2", "mm[Hg", "mg}", "µmol/L", "mg/dL ", "[IU]2",
];

function convert([value, from, to, mw]) {
  const options = mw === undefined ? {} : { molecularWeight: mw };
  const r = utils.convertUnitTo(from, value, to, options);
  return { value, from, to, molar_mass: mw ?? null, status: r.status, result: r.toVal ?? null, msg: r.msg };
}

function validate(code) {
  const r = utils.validateUnitString(code);
  return { code, status: r.status, ucum_code: r.ucumCode ?? null, msg: r.msg };
}

const out = {
  generator: `${pkg.name} ${pkg.version}`,
  conversions: conversions.map(convert),
  validations: validations.map(validate),
};
process.stdout.write(JSON.stringify(out, null, 1) + "\n");

/**
 * Scalar special functions for the JS backend, evaluated in double precision.
 *
 * erf/erfc follow W. J. Cody, "Rational Chebyshev approximations for the
 * error function", Math. Comp. 23 (1969) 631–637: three rational
 * approximations on |x| ≤ 0.46875, ≤ 4 and > 4, accurate to ~1e-16 (far
 * inside the 1e-7 the float32 kernels need). The cheaper Abramowitz–Stegun
 * 7.1.26 (error ~1.5e-7) is not used: it is visibly off next to native
 * `std::erf` at float32 tolerance.
 */
import { Activation } from '../backend';

// Coefficients of Cody's approximations (public, from the paper / netlib specfun).
const A0 = 3.1611237438705656;
const A1 = 113.864154151050156;
const A2 = 377.485237685302021;
const A3 = 3209.37758913846947;
const A4 = 0.185777706184603153;
const B0 = 23.6012909523441209;
const B1 = 244.024637934444173;
const B2 = 1282.61652607737228;
const B3 = 2844.23683343917062;

const C0 = 0.564188496988670089;
const C1 = 8.88314979438837594;
const C2 = 66.1191906371416295;
const C3 = 298.635138197400131;
const C4 = 881.95222124176909;
const C5 = 1712.04761263407058;
const C6 = 2051.07837782607147;
const C7 = 1230.33935479799725;
const C8 = 2.15311535474403846e-8;
const D0 = 15.7449261107098347;
const D1 = 117.693950891312499;
const D2 = 537.181101862009858;
const D3 = 1621.38957456669019;
const D4 = 3290.79923573345963;
const D5 = 4362.61909014324716;
const D6 = 3439.36767414372164;
const D7 = 1230.33935480374942;

const P0 = 0.305326634961232344;
const P1 = 0.360344899949804439;
const P2 = 0.125781726111229246;
const P3 = 0.0160837851487422766;
const P4 = 6.58749161529837803e-4;
const P5 = 0.0163153871373020978;
const Q0 = 2.56852019228982242;
const Q1 = 1.87295284992346047;
const Q2 = 0.527905102951428412;
const Q3 = 0.0605183413124413191;
const Q4 = 0.00233520497626869185;

const INV_SQRT_PI = 0.5641895835477563;
/** Below this erf is evaluated directly; above, through erfc (no cancellation either way). */
const SMALL = 0.46875;
/** erfc(x) underflows to 0 in double beyond this. */
const ERFC_ZERO = 26.6;

/** erf on |x| ≤ 0.46875: x · A(x²) / B(x²). */
function erfSmall(x: number): number {
  const z = x * x;
  const num = ((((A4 * z + A0) * z + A1) * z + A2) * z + A3);
  const den = ((((z + B0) * z + B1) * z + B2) * z + B3);
  return (x * num) / den;
}

/** erfc(y) for y > 0.46875. */
function erfcLarge(y: number): number {
  if (y >= ERFC_ZERO) return 0;
  let r: number;
  if (y <= 4) {
    const num = (((((((C8 * y + C0) * y + C1) * y + C2) * y + C3) * y + C4) * y + C5) * y + C6) * y + C7;
    const den = (((((((y + D0) * y + D1) * y + D2) * y + D3) * y + D4) * y + D5) * y + D6) * y + D7;
    r = num / den;
  } else {
    const z = 1 / (y * y);
    const num = (((((P5 * z + P0) * z + P1) * z + P2) * z + P3) * z + P4) * z;
    const den = ((((z + Q0) * z + Q1) * z + Q2) * z + Q3) * z + Q4;
    r = (INV_SQRT_PI - num / den) / y;
  }
  // exp(-y²) split as exp(-t²)·exp(-(y-t)(y+t)) with t = y rounded down to 1/16:
  // t² is exact, so the large exponent loses no bits to rounding of y².
  const t = Math.floor(y * 16) / 16;
  return Math.exp(-t * t) * Math.exp(-(y - t) * (y + t)) * r;
}

/** The error function, |error| < 1e-13 (checked against a series reference in the tests). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax <= SMALL) return erfSmall(x);
  if (ax !== ax) return x; // NaN
  const r = erfcLarge(ax);
  return x < 0 ? r - 1 : 1 - r;
}

/** The complementary error function 1 − erf(x), with full relative accuracy for large x. */
export function erfc(x: number): number {
  const ax = Math.abs(x);
  if (ax <= SMALL) return 1 - erfSmall(x);
  if (ax !== ax) return x;
  const r = erfcLarge(ax);
  return x < 0 ? 2 - r : r;
}

const SQRT1_2 = Math.SQRT1_2;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * Exact GELU, x·Φ(x) = 0.5·x·erfc(−x/√2). Written with erfc so the negative
 * tail keeps its relative accuracy instead of cancelling in 1 + erf.
 */
export function geluExact(x: number): number {
  return 0.5 * x * erfc(-x * SQRT1_2);
}

/** GELU, tanh approximation (PyTorch `approximate='tanh'`). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

/** The GEMMs' fused activation (`Activation`) of one value: what the JS backend's float32 and int8 stores apply. */
export function applyActivation(v: number, act: Activation): number {
  switch (act) {
    case Activation.Relu:
      return v < 0 ? 0 : v;
    case Activation.Gelu:
      return geluExact(v);
    case Activation.GeluTanh:
      return geluTanh(v);
    default:
      return v;
  }
}

//! Go 1.19 `math` functions (amd64) whose results differ from Rust's std
//! by more than rounding: Prometheus is built with them, and PromQL
//! exposes them directly, so we reproduce them.

use std::f64::consts::{FRAC_PI_2, LN_2, LOG10_E, LOG2_E};

/// `math.Max`: +Inf wins over NaN, then NaN wins, and +0 beats -0.
pub(super) fn max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// `math.Min`: -Inf wins over NaN, then NaN wins, and -0 beats +0.
pub(super) fn min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// `math.Log` on amd64 (log_amd64.s): fdlibm's algorithm, but the
/// exponent is split off the raw bits without normalising subnormals, so
/// e.g. ln(5e-324) is -709.09, not -744.44. Port keeps its operation order.
pub(super) fn log(x: f64) -> f64 {
    const HSQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
    let ln2_hi = f64::from_bits(0x3fe6_2e42_fee0_0000);
    let ln2_lo = f64::from_bits(0x3dea_39ef_3579_3c76);
    let l = [
        f64::from_bits(0x3FE5_5555_5555_5593),
        f64::from_bits(0x3FD9_9999_9997_FA04),
        f64::from_bits(0x3FD2_4924_9422_9359),
        f64::from_bits(0x3FCC_71C5_1D8E_78AF),
        f64::from_bits(0x3FC7_4664_96CB_03DE),
        f64::from_bits(0x3FC3_9A09_D078_C69F),
        f64::from_bits(0x3FC2_F112_DF3E_5244),
    ];
    let bits = x.to_bits();
    if bits << 1 == 0 {
        return f64::NEG_INFINITY; // ±0
    }
    if x.is_sign_negative() {
        return f64::NAN;
    }
    if bits >= f64::INFINITY.to_bits() {
        return x; // +Inf or NaN
    }
    let mut f1 = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FE0_0000_0000_0000);
    let mut k = (((bits >> 52) & 0x7FF) as i32 - 0x3FE) as f64;
    if f1 <= HSQRT2 {
        // The asm's CMPSD "not less than" makes this <=, where log.go has <.
        k -= 1.0;
        f1 *= 2.0;
    }
    let f = f1 - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (((l[6] * s4 + l[4]) * s4 + l[2]) * s4 + l[0]);
    let t2 = s4 * ((l[5] * s4 + l[3]) * s4 + l[1]);
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * ln2_hi - ((hfsq - (s * (hfsq + r) + k * ln2_lo)) - f)
}

/// `math.Log2`: exact for powers of two, else `Log(frac)/Ln2 + exp`.
pub(super) fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    log(frac) * LOG2_E + exp as f64
}

/// `math.Log10`: `Log(x) * (1/Ln10)`.
pub(super) fn log10(x: f64) -> f64 {
    log(x) * LOG10_E
}

/// `math.Frexp`: x = frac * 2^exp with |frac| in [0.5, 1); zero,
/// infinities and NaN come back unchanged with exp 0.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || x.is_infinite() || x.is_nan() {
        return (x, 0);
    }
    let (mut x, mut exp) = (x, 0);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64; // normalise subnormals
        exp = -52;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    (f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52)), exp)
}

/// `math.Exp` on amd64 (exp_amd64.s, Shibata's method): reduce by
/// k = round(x*log2 e), a Taylor series on r/16, square four times, scale
/// by 2^k. It returns +Inf once k reaches 1024, i.e. from x ≈ 709.44 where
/// the true result is still finite. Go takes an FMA path when the CPU has
/// AVX and FMA; both paths are reproduced.
#[allow(clippy::excessive_precision)] // constants as written in the .s file
pub(super) fn exp(x: f64) -> f64 {
    const LN2U: f64 = 0.693_147_180_559_662_956_511_601_805_686_950_683_593_75;
    const LN2L: f64 = 0.282_352_905_630_315_771_225_884_481_750_134_360_255_254_120_68e-12;
    const TAYLOR: [f64; 7] = [
        1.984_126_984_126_984_127e-4,
        1.388_888_888_888_888_888_9e-3,
        8.333_333_333_333_333_333_3e-3,
        4.166_666_666_666_666_666_7e-2,
        1.666_666_666_666_666_666_7e-1,
        0.5,
        1.0,
    ];
    const TAYLOR_TOP: f64 = 2.480_158_730_158_730_158_7e-5;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == f64::NEG_INFINITY {
        return 0.0;
    }
    if x > 7.097_827_128_933_84e2 {
        return f64::INFINITY;
    }
    // CVTSD2SL: round to nearest even, i32::MIN when out of range.
    let kr = (x * LOG2_E).round_ties_even();
    let k = if kr >= -2_147_483_648.0 {
        kr as i32
    } else {
        i32::MIN
    };
    let kf = k as f64;
    let mut y;
    if fma_like_go() {
        let r = (-kf).mul_add(LN2L, (-kf).mul_add(LN2U, x)) * 0.0625;
        let p = TAYLOR.iter().fold(TAYLOR_TOP, |p, &c| p.mul_add(r, c));
        y = r * p;
        for _ in 0..3 {
            y *= y + 2.0;
        }
        y = (y + 2.0).mul_add(y, 1.0);
    } else {
        let r = (x - kf * LN2U - kf * LN2L) * 0.0625;
        let p = TAYLOR.iter().fold(TAYLOR_TOP, |p, &c| p * r + c);
        y = r * p;
        for _ in 0..4 {
            y *= y + 2.0;
        }
        y += 1.0;
    }
    // ldexp with the asm's own subnormal and overflow handling.
    let mut b = k.wrapping_add(0x3FF);
    if b <= 0 {
        if b < -52 {
            return 0.0;
        }
        y *= f64::from_bits(((b + 0x3FE) as u64) << 52);
        b = 1;
    } else if b >= 0x7FF {
        return f64::INFINITY;
    }
    y * f64::from_bits((b as u64) << 52)
}

/// Go's `useFMA` for exp_amd64.s: the CPU has AVX and FMA.
fn fma_like_go() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `math.Sinh` (the |x| <= 0.5 polynomial branch is left to std).
pub(super) fn sinh(x: f64) -> f64 {
    let a = x.abs();
    let t = if a > 21.0 {
        exp(a) * 0.5
    } else if a > 0.5 {
        let ex = exp(a);
        (ex - 1.0 / ex) * 0.5
    } else {
        return x.sinh();
    };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// `math.Cosh`.
pub(super) fn cosh(x: f64) -> f64 {
    let x = x.abs();
    if x > 21.0 {
        return exp(x) * 0.5;
    }
    let ex = exp(x);
    (ex + 1.0 / ex) * 0.5
}

/// `math.Asin`: via atan of sqrt(1 - x*x), which loses precision near ±1
/// the way Go does (Go's own atan is within an ulp of std's).
pub(super) fn asin(x: f64) -> f64 {
    if x == 0.0 {
        return x;
    }
    let a = x.abs();
    if a > 1.0 {
        return f64::NAN;
    }
    let temp = (1.0 - a * a).sqrt();
    let r = if a > 0.7 {
        FRAC_PI_2 - (temp / a).atan()
    } else {
        (a / temp).atan()
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// `math.Acos`: Pi/2 - Asin(x).
pub(super) fn acos(x: f64) -> f64 {
    FRAC_PI_2 - asin(x)
}

/// `math.Asinh` (fdlibm); std's overflows to Inf for |x| near f64::MAX.
pub(super) fn asinh(x: f64) -> f64 {
    const NEAR_ZERO: f64 = 1.0 / (1u64 << 28) as f64;
    const LARGE: f64 = (1u64 << 28) as f64;
    if x.is_nan() || x.is_infinite() {
        return x;
    }
    // Go negates only when x < 0, so -0 comes back as -0.
    let a = if x < 0.0 { -x } else { x };
    let t = if a > LARGE {
        log(a) + LN_2
    } else if a > 2.0 {
        log(2.0 * a + 1.0 / ((a * a + 1.0).sqrt() + a))
    } else if a < NEAR_ZERO {
        a
    } else {
        (a + a * a / (1.0 + (1.0 + a * a).sqrt())).ln_1p()
    };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// `math.Acosh` (fdlibm).
pub(super) fn acosh(x: f64) -> f64 {
    const LARGE: f64 = (1u64 << 28) as f64;
    if x < 1.0 || x.is_nan() {
        f64::NAN
    } else if x == 1.0 {
        0.0
    } else if x >= LARGE {
        log(x) + LN_2
    } else if x > 2.0 {
        log(2.0 * x - 1.0 / (x + (x * x - 1.0).sqrt()))
    } else {
        let t = x - 1.0;
        (t + (2.0 * t + t * t).sqrt()).ln_1p()
    }
}

/// `math.Atanh` (fdlibm); works on |x|, so it stays accurate near -1
/// where std's is not.
pub(super) fn atanh(x: f64) -> f64 {
    const NEAR_ZERO: f64 = 1.0 / (1u64 << 28) as f64;
    if x.is_nan() || !(-1.0..=1.0).contains(&x) {
        return f64::NAN;
    }
    if x == 1.0 || x == -1.0 {
        return x * f64::INFINITY;
    }
    let a = if x < 0.0 { -x } else { x }; // keeps -0, as Go does
    let t = if a < NEAR_ZERO {
        a
    } else if a < 0.5 {
        let t = a + a;
        0.5 * (t + t * a / (1.0 - a)).ln_1p()
    } else {
        0.5 * ((a + a) / (1.0 - a)).ln_1p()
    };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quirks() {
        // Values observed from Prometheus 2.42.0 (Go 1.19, amd64).
        assert_eq!(log(5e-324), -709.089_565_712_824_1);
        assert_eq!(log10(1000.0), 3.0);
        assert_eq!(log2(5e-324), -1074.0);
        assert_eq!(exp(709.5), f64::INFINITY);
        assert_eq!(cosh(709.5), f64::INFINITY);
        assert_eq!(asinh(1e308), 709.889_355_822_726);
        assert_eq!(acosh(1e308), 709.889_355_822_726);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1e308), 0.0);
        assert!(exp(-745.0) > 0.0);
        assert_eq!(log(1.0), 0.0);
        assert!(log(-1.0).is_nan());
        assert_eq!(log(-0.0), f64::NEG_INFINITY);
        assert_eq!(atanh(-1.0), f64::NEG_INFINITY);
        assert!(atanh(1.5).is_nan());
        assert!(asin(-0.0).is_sign_negative());
        assert!(asinh(-0.0).is_sign_negative());
        assert!(atanh(-0.0).is_sign_negative());
    }

    #[test]
    fn close_to_std() {
        for i in -300..300 {
            let x = i as f64 * 0.37;
            let rel = |a: f64, b: f64| ((a - b) / b).abs();
            assert!(rel(exp(x), x.exp()) < 1e-15, "exp {x}");
            if x > 0.0 {
                assert!(rel(log(x), x.ln()) < 1e-15 || x == 1.0, "log {x}");
            }
        }
    }
}

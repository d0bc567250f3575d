package gate

import (
	"math"
	"time"
)

// stepModel learns how long one engine step takes from the engine's own
// counters:
//
//	step = Base + PerOurs×ours + PerOther×others + PerToken×prefill
//
// where ours are the worker's sequences running in the batch, others the
// other traffic's, and prefill the prompt tokens a step computes. The two
// kinds of sequence are fitted apart because they cost differently: an
// async generation is usually long, so it carries more context (KV reads
// each step) than a short interactive exchange. Each pair of consecutive
// scrapes during which the engine ran gives one sample (mean step time =
// elapsed / steps); the fit is weighted least squares with older samples
// fading with time constant tau, so it follows the engine as contexts and
// the mix of requests change.
type stepModel struct {
	tau time.Duration
	// Weighted sums over samples of the regressors x (ours, others,
	// prefill), the step time y, and their products.
	w, y   float64
	x, xy  [3]float64
	xx     [3][3]float64
	spread [3]float64 // standard deviation of each regressor (set by fit)

	samples int
	lastAt  time.Time
	// fitted holds the latest good fit, kept while later samples do not
	// determine one (the worker's count held steady).
	fitted stepFit
}

// stepFit is a fitted step model, in seconds.
type stepFit struct {
	ok                              bool
	base, perOurs, perOther, perTok float64
}

// minSamples and minSpread are what a fit needs: enough samples, and the
// worker's sequences having varied by at least one (standard deviation),
// so their cost is measured rather than guessed.
const (
	minSamples = 20
	minSpread  = 1.0
	// minRegressorSpread is the least spread of the other regressors (other
	// sequences, prefill tokens) for them to enter the fit.
	minRegressorSpread = 0.25
)

// observe adds the interval between two scrapes.
func (m *stepModel) observe(prev, cur Snapshot) {
	steps := cur.Steps - prev.Steps
	dt := cur.At.Sub(prev.At)
	if !prev.HasSteps || !cur.HasSteps || steps < 2 || dt <= 0 || prev.Running < 1 || cur.Running < 1 {
		return // no steps counted, or the engine may have idled in between
	}
	// Waiting sequences cost a step nothing: count ours as running first.
	ours := (min(prev.Ours, prev.Running) + min(cur.Ours, cur.Running)) / 2
	others := (prev.Running+cur.Running)/2 - ours
	prefill := max(0, (cur.StepTokens-prev.StepTokens)/steps-ours-others)
	m.add(cur.At, [3]float64{ours, others, prefill}, dt.Seconds()/steps)
}

func (m *stepModel) add(at time.Time, x [3]float64, y float64) {
	if !m.lastAt.IsZero() {
		f := math.Exp(-float64(at.Sub(m.lastAt)) / float64(m.tau))
		m.w, m.y = f*m.w, f*m.y
		for i := range 3 {
			m.x[i], m.xy[i] = f*m.x[i], f*m.xy[i]
			for j := range 3 {
				m.xx[i][j] *= f
			}
		}
	}
	m.lastAt = at
	m.w++
	m.y += y
	for i := range 3 {
		m.x[i] += x[i]
		m.xy[i] += x[i] * y
		for j := range 3 {
			m.xx[i][j] += x[i] * x[j]
		}
	}
	m.samples++
	if f := m.solve(); f.ok {
		m.fitted = f
	}
}

// fit returns the latest good fit; ok is false until the samples first
// determined one.
func (m *stepModel) fit() stepFit { return m.fitted }

// solve fits the current sums: every regressor that varied, the worker's
// sequences always (without them there is nothing to fit).
func (m *stepModel) solve() stepFit {
	if m.samples < minSamples || m.w <= 0 {
		return stepFit{}
	}
	var mean [3]float64
	for i := range 3 {
		mean[i] = m.x[i] / m.w
	}
	my := m.y / m.w
	var cov [3][3]float64
	var cy [3]float64
	for i := range 3 {
		cy[i] = m.xy[i]/m.w - mean[i]*my
		for j := range 3 {
			cov[i][j] = m.xx[i][j]/m.w - mean[i]*mean[j]
		}
		m.spread[i] = math.Sqrt(max(0, cov[i][i]))
	}
	if m.spread[0] < minSpread {
		return stepFit{}
	}
	// Use the regressors that varied and are not (nearly) a multiple of
	// those already chosen, so the system stays well conditioned.
	use := []int{0}
	for _, i := range []int{1, 2} {
		if m.spread[i] < minRegressorSpread {
			continue // (nearly) constant: nothing to learn from it
		}
		trial := append(use[:len(use):len(use)], i)
		if conditioned(cov, trial) {
			use = trial
		}
	}
	beta, ok := solveLinear(cov, cy, use)
	if !ok {
		return stepFit{}
	}
	var coef [3]float64
	for k, i := range use {
		coef[i] = beta[k]
	}
	base := my
	for i := range 3 {
		base -= coef[i] * mean[i]
	}
	f := stepFit{ok: true, base: base, perOurs: coef[0], perOther: max(0, coef[1]), perTok: max(0, coef[2])}
	if f.perOurs <= 0 || f.base <= 0 {
		return stepFit{} // no real engine gets faster with more sequences
	}
	return f
}

// conditioned reports whether the regressors in use are far enough from
// collinear: the determinant of their correlation matrix is at least 2 %.
func conditioned(cov [3][3]float64, use []int) bool {
	n := len(use)
	var corr [3][3]float64
	for a, i := range use {
		for b, j := range use {
			corr[a][b] = cov[i][j] / math.Sqrt(cov[i][i]*cov[j][j])
		}
	}
	switch n {
	case 1:
		return true
	case 2:
		return corr[0][0]*corr[1][1]-corr[0][1]*corr[1][0] > 0.02
	default:
		det := corr[0][0]*(corr[1][1]*corr[2][2]-corr[1][2]*corr[2][1]) -
			corr[0][1]*(corr[1][0]*corr[2][2]-corr[1][2]*corr[2][0]) +
			corr[0][2]*(corr[1][0]*corr[2][1]-corr[1][1]*corr[2][0])
		return det > 0.02
	}
}

// solveLinear solves cov[use][use]·β = cy[use] by Gaussian elimination with
// partial pivoting.
func solveLinear(cov [3][3]float64, cy [3]float64, use []int) ([]float64, bool) {
	n := len(use)
	a := make([][]float64, n)
	for r, i := range use {
		a[r] = make([]float64, n+1)
		for c, j := range use {
			a[r][c] = cov[i][j]
		}
		a[r][n] = cy[i]
	}
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[p][col]) {
				p = r
			}
		}
		if a[p][col] == 0 {
			return nil, false
		}
		a[col], a[p] = a[p], a[col]
		for r := col + 1; r < n; r++ {
			f := a[r][col] / a[col][col]
			for c := col; c <= n; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	beta := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		v := a[r][n]
		for c := r + 1; c < n; c++ {
			v -= a[r][c] * beta[c]
		}
		beta[r] = v / a[r][r]
	}
	return beta, true
}

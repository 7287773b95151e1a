package perf

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// chartPanel is one small bar chart of the SVG: one bar per
// configuration, on its own scale, because TCP Mbit/s and 64-byte frame
// rates differ by orders of magnitude.
type chartPanel struct {
	title string
	unit  string
	value func(BenchResult) (float64, bool)
}

func (r *BenchReport) chartPanels() []chartPanel {
	panels := []chartPanel{{title: "TCP, 1 stream", unit: "Mbit/s", value: func(res BenchResult) (float64, bool) {
		return res.TCPMbps, res.TCPMbps > 0
	}}}
	for _, name := range r.Frames {
		panels = append(panels, chartPanel{title: "zero-loss, " + name + " B frames", unit: "kpps", value: func(res BenchResult) (float64, bool) {
			f, ok := res.Frame(name)
			return f.ZeroLossPPS / 1e3, ok && f.ZeroLossPPS > 0
		}})
		if name == r.Frames[len(r.Frames)-1] {
			panels = append(panels, chartPanel{title: "p99 latency at zero loss, " + name, unit: "us", value: func(res BenchResult) (float64, bool) {
				f, ok := res.Frame(name)
				return float64(f.Latency.P99.Microseconds()), ok && f.Latency.Samples > 0
			}})
		}
	}
	return panels
}

// WriteSVG draws the report as a row of bar charts: TCP, the zero-loss
// rate of each frame profile and the latency of the last one, with a
// legend and the run's header. It needs no plotting tool.
func (r *BenchReport) WriteSVG(w io.Writer) error {
	const (
		panelW, panelH = 210, 260
		top, bottom    = 70, 40
		barGap         = 8
	)
	panels := r.chartPanels()
	width, height := len(panels)*panelW+20, top+panelH+bottom+30
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="10" y="20" font-size="14" font-weight="bold">xdpsec-bench, %s, %d CPUs, kernel %s</text>`+"\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.CPUs, esc(r.Kernel))
	fmt.Fprintf(bw, `<text x="10" y="38">%s</text>`+"\n", esc(labDescription(r.Lab)))
	x := 10.0
	for _, res := range r.Results {
		fmt.Fprintf(bw, `<rect x="%.0f" y="48" width="10" height="10" fill="%s"/><text x="%.0f" y="57">%s</text>`+"\n",
			x, colour(res.Config), x+14, esc(res.Config))
		x += 24 + 7*float64(len(res.Config))
	}
	for i, p := range panels {
		r.writePanel(bw, p, float64(10+i*panelW), top, panelW-20, panelH, barGap)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func (r *BenchReport) writePanel(w io.Writer, p chartPanel, x0, y0, pw, ph, gap float64) {
	peak := 0.0
	for _, res := range r.Results {
		if v, ok := p.value(res); ok {
			peak = max(peak, v)
		}
	}
	scale := niceCeil(peak)
	plotTop, plotH := y0+20, ph-40
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", x0, y0+8, esc(p.title))
	fmt.Fprintf(w, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, plotTop+plotH, x0+pw, plotTop+plotH)
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#555">%s %s</text>`+"\n", x0, plotTop+plotH+28, esc(formatValue(scale)), esc(p.unit+" full scale"))
	n := float64(max(len(r.Results), 1))
	barW := (pw - gap*(n+1)) / n
	for i, res := range r.Results {
		bx := x0 + gap + float64(i)*(barW+gap)
		v, ok := p.value(res)
		if !ok {
			fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#999">n/a</text>`+"\n", bx+barW/2, plotTop+plotH-4)
			continue
		}
		h := 0.0
		if scale > 0 {
			h = plotH * v / scale
		}
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s %s</title></rect>`+"\n",
			bx, plotTop+plotH-h, barW, h, colour(res.Config), esc(res.Config), formatValue(v), esc(p.unit))
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", bx+barW/2, plotTop+plotH-h-3, esc(formatValue(v)))
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so a panel's
// full scale is a round number.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatValue(v float64) string {
	if v >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// colour gives each configuration the same colour in every chart.
func colour(config string) string {
	switch config {
	case ConfigPlain:
		return "#7f7f7f"
	case ConfigXdpsec:
		return "#1f77b4"
	case ConfigStrongSwan:
		return "#d62728"
	case ConfigWireGuard:
		return "#2ca02c"
	}
	return "#9467bd"
}

func esc(s string) string { return html.EscapeString(s) }

package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Colours of the contenders in the chart.
var (
	colourOf = map[Contender]color.RGBA{
		DaemonSet:    {150, 150, 150, 255},
		NodeAgentSet: {46, 110, 200, 255},
		Floor:        {70, 160, 90, 255},
	}
	ink   = color.RGBA{30, 30, 30, 255}
	faint = color.RGBA{225, 225, 225, 255}
)

// bar is one bar of a group.
type bar struct {
	who   Contender
	value float64
}

// group is a labelled cluster of bars.
type group struct {
	label string
	bars  []bar
}

// Chart draws, per mode, the median create and rolling-update times of each
// contender at each size: one panel per mode, one group of bars per size and
// phase.
func (res *Results) Chart(w io.Writer) error {
	const panelW, height = 620, 460
	modes := res.Config.Modes()
	img := image.NewRGBA(image.Rect(0, 0, panelW*len(modes), height))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	for i, m := range modes {
		var groups []group
		for _, n := range sizes(res.Samples) {
			for _, f := range []Figure{figCreate, figUpdate} {
				g := group{label: fmt.Sprintf("%d %s", n, map[bool]string{true: "create", false: "update"}[f.Name == figCreate.Name])}
				for _, who := range []Contender{DaemonSet, NodeAgentSet, Floor} {
					if st := stat(pick(res.Samples, n, m.Name, who), f); st.N > 0 {
						g.bars = append(g.bars, bar{who, st.Median})
					}
				}
				if len(g.bars) > 0 {
					groups = append(groups, g)
				}
			}
		}
		title := "equal client limits"
		if m.Name != "equal" {
			title = "shipped defaults"
		}
		panel(img, image.Rect(i*panelW, 0, (i+1)*panelW, height), title+": seconds, lower is better", groups)
	}
	return png.Encode(w, img)
}

func panel(img *image.RGBA, r image.Rectangle, title string, groups []group) {
	plot := image.Rect(r.Min.X+56, r.Min.Y+48, r.Max.X-16, r.Max.Y-56)
	text(img, r.Min.X+56, r.Min.Y+20, title)
	legend(img, r.Min.X+56, r.Min.Y+38)
	top := 0.0
	for _, g := range groups {
		for _, b := range g.bars {
			top = math.Max(top, b.value)
		}
	}
	if top == 0 {
		return
	}
	step := niceStep(top / 5)
	top = math.Ceil(top/step) * step
	y := func(v float64) int { return plot.Max.Y - int(v/top*float64(plot.Dy())) }
	for v := 0.0; v <= top+step/2; v += step {
		fill(img, image.Rect(plot.Min.X, y(v), plot.Max.X, y(v)+1), faint)
		label := num(v)
		text(img, plot.Min.X-8-7*len(label), y(v)+4, label)
	}
	groupW := plot.Dx() / max(len(groups), 1)
	for gi, g := range groups {
		x0 := plot.Min.X + gi*groupW
		barW := (groupW - 12) / 3
		for bi, b := range g.bars {
			bx := x0 + 6 + bi*barW
			fill(img, image.Rect(bx, y(b.value), bx+barW-2, plot.Max.Y), colourOf[b.who])
		}
		text(img, x0+4, plot.Max.Y+16, g.label)
	}
	fill(img, image.Rect(plot.Min.X, plot.Max.Y, plot.Max.X, plot.Max.Y+1), ink)
	text(img, plot.Min.X, plot.Max.Y+40, "nodes and phase")
}

func legend(img *image.RGBA, x, y int) {
	for _, who := range []Contender{DaemonSet, NodeAgentSet, Floor} {
		fill(img, image.Rect(x, y-9, x+10, y+1), colourOf[who])
		text(img, x+14, y, string(who))
		x += 14 + 7*len(who) + 18
	}
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(ink), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

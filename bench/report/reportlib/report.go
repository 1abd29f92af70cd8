// Package reportlib builds the benchmark report: markdown sections from each
// component plus a bar chart (PNG, gonum/plot) per chart in the CSVs.
package reportlib

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Row is one bar: chart name, series (contender), value and unit.
type Row struct {
	Chart, Series string
	Value         float64
	Unit          string
}

// ReadCSV reads rows with the header chart,series,value,unit.
func ReadCSV(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var rows []Row
	for i, r := range recs {
		if i == 0 && len(r) > 0 && r[0] == "chart" {
			continue
		}
		if len(r) != 4 {
			return nil, fmt.Errorf("%s line %d: want 4 fields, got %d", path, i+1, len(r))
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(r[2]), 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: value %q: %w", path, i+1, r[2], err)
		}
		rows = append(rows, Row{r[0], r[1], v, r[3]})
	}
	return rows, nil
}

// Chart draws one bar chart to path.
func Chart(path, title, unit string, rows []Row) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	vals := make(plotter.Values, len(rows))
	names := make([]string, len(rows))
	for i, r := range rows {
		vals[i], names[i] = r.Value, r.Series
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(30))
	if err != nil {
		return fmt.Errorf("chart %s: %w", title, err)
	}
	p.Add(bars)
	p.NominalX(names...)
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// Write builds dir/report.md and the charts.
func Write(dir, failed string) error {
	mds, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	csvs, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	sort.Strings(mds)
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark report\n\n%s, %s/%s, %d CPUs. Ratios compare contenders measured in the same run; absolute numbers on a shared machine are noise.\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if strings.TrimSpace(failed) != "" {
		fmt.Fprintf(&b, "**Failed benchmarks:** %s (see the run's output).\n\n", failed)
	}
	for _, md := range mds {
		if filepath.Base(md) == "report.md" {
			continue
		}
		data, err := os.ReadFile(md)
		if err != nil {
			return err
		}
		b.Write(data)
		b.WriteString("\n\n")
	}
	charts := map[string][]Row{}
	var order []string
	for _, c := range csvs {
		rows, err := ReadCSV(c)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if _, ok := charts[r.Chart]; !ok {
				order = append(order, r.Chart)
			}
			charts[r.Chart] = append(charts[r.Chart], r)
		}
	}
	if len(order) > 0 {
		b.WriteString("## Charts\n\n")
	}
	for _, name := range order {
		png := name + ".png"
		if err := Chart(filepath.Join(dir, png), name, charts[name][0].Unit, charts[name]); err != nil {
			return err
		}
		fmt.Fprintf(&b, "![%s](%s)\n\n", name, png)
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644)
}

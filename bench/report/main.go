// Command report gathers bench/out/<component>.md sections and .csv rows
// into bench/out/report.md, with one PNG bar chart per chart name.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/deis/dataplane/bench/report/reportlib"
)

func main() {
	dir := flag.String("dir", "bench/out", "directory with <component>.md and .csv files")
	failed := flag.String("failed", "", "space-separated components whose benchmark failed")
	flag.Parse()
	if err := reportlib.Write(*dir, *failed); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

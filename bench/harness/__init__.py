"""What several benchmarks share: topics set up and dropped (:mod:`.topics`), apex-stream
processes started and stopped (:mod:`.processes`), throwaway databases (:mod:`.database`), CPU
and memory from /proc (:mod:`.procstat`), py-spy recordings (:mod:`.pyspy`), the sink group's
offsets (:mod:`.offsets`), the pipeline's traffic mix (:mod:`.traffic`) and the storage report
both storage benchmarks write (:mod:`.sink_report`)."""

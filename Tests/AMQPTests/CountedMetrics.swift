import CoreMetrics
import Synchronization

/// A fake for the tests, named so: swift-metrics' counters of this test process counted by label
/// (every other metric goes nowhere), for tests that check what the client counts. Bootstrapped
/// the first time a test asks; no other test target bootstraps swift-metrics.
final class CountedMetrics: MetricsFactory {
    static let shared: CountedMetrics = {
        let metrics = CountedMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()

    private let counts = Mutex<[String: Int64]>([:])

    /// What counters labelled `label` added up to so far, whatever their dimensions.
    func count(_ label: String) -> Int64 { counts.withLock { $0[label, default: 0] } }

    private final class Counted: CounterHandler {
        let label: String
        let metrics: CountedMetrics
        init(label: String, metrics: CountedMetrics) {
            self.label = label
            self.metrics = metrics
        }
        func increment(by amount: Int64) { metrics.counts.withLock { $0[label, default: 0] += amount } }
        func reset() {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler { Counted(label: label, metrics: self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler { NOOPMetricsHandler.instance }
    func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler { NOOPMetricsHandler.instance }
    func destroyCounter(_ handler: CounterHandler) {}
    func destroyRecorder(_ handler: RecorderHandler) {}
    func destroyTimer(_ handler: TimerHandler) {}
}

import Foundation
import Testing
import TestSupport

/// Deploy/lab/chaos.py in its own lab: seeded random faults between requests of the real
/// fence_xvm, every answer judged against what every host's libvirtd says right after it. One of
/// the serialized lab tests: beside the other suites, its lab's start-up starved their
/// deadline-bound tests of CPU.
extension RoutedFencingTests {
    static let chaosScript = Fixtures.repository.appendingPathComponent("Deploy/lab/chaos.py").path

    @Test("200 requests among killed, frozen and cut-off agents, routers and broker, libvirtd restarts with autostart, migrations and changes behind the router's back: no false success")
    func randomisedFaults() async throws {
        try TestEnvironment.require(MultiHostLab.prerequisites)
        // A new seed each run explores new orders; the seed is printed, so a failure replays with
        // FENCE_ROUTER_CHAOS_SEED=S (or Benchmarks/chaos.sh --seed S).
        let seed = ProcessInfo.processInfo.environment["FENCE_ROUTER_CHAOS_SEED"] ?? String(UInt32.random(in: 0..<UInt32.max >> 1))
        let result = try await Command.run(["python3", Self.chaosScript, "--bin", Products.directory.path, "--ops", "200", "--seed", seed, "--quiet"])
        print(result.output)
        #expect(result.status == 0, "seed \(seed): \(result.output)\(result.error)")
        #expect(result.output.contains("false successes: 0"), "seed \(seed)")
        #expect(result.output.contains("| status |"), "the run reached its table")
    }
}

import Foundation
import Testing

/// The daemons park their main thread (`DaemonProcess.start`): nothing runs the main queue or the
/// main actor, so work sent there would wait for ever.
@Suite("the daemons' parked main thread")
struct ParkedMainThreadTests {
    @Test("no code of ours uses the main actor or the main queue")
    func noMainQueue() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources").path
        let files = try #require(FileManager.default.enumerator(atPath: sources)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50, "the sources were found")
        for file in files {
            let text = try String(contentsOfFile: "\(sources)/\(file)", encoding: .utf8)
            for banned in ["MainActor", "DispatchQueue.main", "RunLoop.main"] {
                #expect(!text.contains(banned), "\(file) uses \(banned)")
            }
        }
    }
}

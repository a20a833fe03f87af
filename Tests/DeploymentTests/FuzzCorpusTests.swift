import Foundation
import Testing
import TestSupport

/// The fuzz targets' seeds (and any crash input added to them) through the plain build of
/// `fence-fuzz`, which replays files instead of fuzzing: every input that ever broke a decoder
/// keeps being checked here.
@Suite("fuzz corpus")
struct FuzzCorpusTests {
    @Test("every seed passes through its target", arguments: ["packet", "conversation", "config", "bus"])
    func seeds(target: String) async throws {
        let directory = Fixtures.repository.appendingPathComponent("Fuzz/Corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().map { directory.appendingPathComponent($0).path }
        #expect(files.count >= 4, "seeds for \(target)")
        let result = try await Command.run([try Products.path("fence-fuzz"), target] + files)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("\(files.count) inputs through \(target), no failure"), "\(result)")
    }
}

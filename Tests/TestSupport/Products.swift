import Foundation

/// The executables this package builds, found beside the test bundle in the build directory.
public enum Products {
    public static var directory: URL {
        URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .deletingLastPathComponent()
    }

    public struct Missing: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "\(name) is not built in \(Products.directory.path); run swift build first" }
    }

    /// The absolute path of a built executable.
    public static func path(_ name: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else { throw Missing(name: name) }
        return url.path
    }
}

import Foundation

/// Files checked in under `Tests/Fixtures`, found relative to this source file so that every test
/// target reads the same copies whatever the working directory.
public enum Fixtures {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// The checkout itself, for the project's scripts under `Deploy/`.
    public static let repository: URL = root.deletingLastPathComponent().deletingLastPathComponent()

    /// The scripted attackers of the end-to-end tests.
    public static let attacker: URL = repository.appendingPathComponent("Tests/Attackers/xvm_attacker.py")

    public static func url(_ relativePath: String) -> URL {
        root.appendingPathComponent(relativePath)
    }

    public static func bytes(_ relativePath: String) throws -> [UInt8] {
        Array(try Data(contentsOf: url(relativePath)))
    }

    /// The packets, challenges and daemon streams captured from the real Debian client and daemon.
    public static func fenceXVMVectors() throws -> FenceXVMVectors {
        try JSONDecoder().decode(FenceXVMVectors.self, from: Data(contentsOf: url("fence-xvm/vectors.json")))
    }
}

/// The shape of `vectors.json` (only the fields the tests read).
public struct FenceXVMVectors: Decodable, Sendable {
    public struct Request: Decodable, Sendable {
        public struct Decoded: Decodable, Sendable {
            public let request: UInt8
            public let hashtype: UInt8
            public let addrlen: UInt8
            public let flags: UInt8
            public let domain: String
            public let ip: String
            public let port: UInt16
            public let seqno: UInt32
            public let family: UInt32
        }

        public let name: String
        public let fenceXVMArgs: String
        public let packetHex: String
        public let udpSource: String
        public let decoded: Decoded
        public let keyFile: String

        enum CodingKeys: String, CodingKey {
            case name, decoded
            case fenceXVMArgs = "fence_xvm_args"
            case packetHex = "packet_hex"
            case udpSource = "udp_source"
            case keyFile = "key_file"
        }

        public var packet: [UInt8] { Hex.decode(packetHex) }
    }

    public struct Challenge: Decodable, Sendable {
        public let auth: String
        public let direction: String
        public let challengeHex: String
        public let responseHex: String
        public let keyFile: String

        enum CodingKeys: String, CodingKey {
            case auth, direction
            case challengeHex = "challenge_hex"
            case responseHex = "response_hex"
            case keyFile = "key_file"
        }
    }

    public struct DaemonStream: Decodable, Sendable {
        public struct Record: Decodable, Sendable {
            public let domain: String
            public let uuid: String
            public let state: UInt8
        }

        public let file: String
        public let streamAfterAuthHex: String
        public let hostlist: [Record]?

        enum CodingKeys: String, CodingKey {
            case file, hostlist
            case streamAfterAuthHex = "stream_after_auth_hex"
        }
    }

    public let requests: [Request]
    public let challenges: [Challenge]
    public let daemonStreams: [DaemonStream]

    enum CodingKeys: String, CodingKey {
        case requests, challenges
        case daemonStreams = "daemon_streams"
    }
}

public enum Hex {
    public static func decode(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            bytes.append(UInt8(nibble(high) << 4 | nibble(low)))
        }
        return bytes
    }

    private static func nibble(_ character: UInt8) -> Int {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(character - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(character - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(character - UInt8(ascii: "A") + 10)
        default: 0
        }
    }
}

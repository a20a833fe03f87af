/// The shared secret of fence_xvm: the raw bytes of the key file, at most the first 4096.
///
/// Nothing is trimmed: a trailing newline is key material, exactly as the reference reads it.
public struct FenceKey: Sendable, Equatable {
    /// The reference reads at most this many bytes of the key file.
    public static let maximumLength = 4096

    public let bytes: [UInt8]

    public init(fileContents: some Collection<UInt8>) {
        self.bytes = Array(fileContents.prefix(Self.maximumLength))
    }

    public var isEmpty: Bool { bytes.isEmpty }
}

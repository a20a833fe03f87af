import CProton

/// An AMQP 1.0 message with the fields we use: the body is one data section (opaque bytes).
public struct AMQPMessage: Hashable, Sendable {
    public var body: [UInt8]
    public var messageID: String?
    public var correlationID: String?
    public var subject: String?
    public var replyTo: String?
    public var contentType: String?
    /// The header's time to live; the broker drops the message once it has waited this long.
    public var timeToLive: Duration?
    public var durable: Bool
    public var applicationProperties: [String: String]

    public init(
        body: [UInt8],
        messageID: String? = nil,
        correlationID: String? = nil,
        subject: String? = nil,
        replyTo: String? = nil,
        contentType: String? = nil,
        timeToLive: Duration? = nil,
        durable: Bool = false,
        applicationProperties: [String: String] = [:]
    ) {
        self.body = body
        self.messageID = messageID
        self.correlationID = correlationID
        self.subject = subject
        self.replyTo = replyTo
        self.contentType = contentType
        self.timeToLive = timeToLive
        self.durable = durable
        self.applicationProperties = applicationProperties
    }
}

/// The one place messages meet Proton's codec. Not thread-safe: each thread uses its own.
final class MessageCodec {
    private let message: OpaquePointer = pn_message()
    private var buffer = [CChar](repeating: 0, count: 4096)

    deinit { pn_message_free(message) }

    func encode(_ value: AMQPMessage) throws(AMQPError) -> [UInt8] {
        pn_message_clear(message)
        // A body of bytes travels as a data section, not as an AMQP value.
        pn_message_set_inferred(message, true)
        let body = pn_message_body(message)
        value.body.withUnsafeBytes { bytes in
            _ = pn_data_put_binary(body, pn_bytes(bytes.count, bytes.baseAddress?.assumingMemoryBound(to: CChar.self)))
        }
        if let id = value.messageID { Self.setID(id) { pn_message_set_id(message, $0) } }
        if let id = value.correlationID { Self.setID(id) { pn_message_set_correlation_id(message, $0) } }
        if let subject = value.subject { pn_message_set_subject(message, subject) }
        if let replyTo = value.replyTo { pn_message_set_reply_to(message, replyTo) }
        if let contentType = value.contentType { pn_message_set_content_type(message, contentType) }
        if let ttl = value.timeToLive {
            let (seconds, attoseconds) = ttl.components
            pn_message_set_ttl(message, pn_millis_t(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        }
        pn_message_set_durable(message, value.durable)
        if !value.applicationProperties.isEmpty {
            let properties = pn_message_properties(message)
            pn_data_put_map(properties)
            pn_data_enter(properties)
            for (key, text) in value.applicationProperties.sorted(by: { $0.key < $1.key }) {
                Self.withBytes(key) { _ = pn_data_put_string(properties, $0) }
                Self.withBytes(text) { _ = pn_data_put_string(properties, $0) }
            }
            pn_data_exit(properties)
        }
        while true {
            var size = buffer.count
            let result = pn_message_encode(message, &buffer, &size)
            if result == PN_OVERFLOW {
                buffer = [CChar](repeating: 0, count: buffer.count * 2)
                continue
            }
            guard result >= 0 else { throw AMQPError(.invalidMessage, "cannot encode the message (\(result))") }
            return buffer.prefix(size).map { UInt8(bitPattern: $0) }
        }
    }

    func decode(_ bytes: [CChar]) throws(AMQPError) -> AMQPMessage {
        pn_message_clear(message)
        let result = bytes.withUnsafeBufferPointer { pn_message_decode(message, $0.baseAddress, $0.count) }
        guard result >= 0 else { throw AMQPError(.invalidMessage, "cannot decode a received message (\(result))") }
        var value = AMQPMessage(body: Self.bytes(of: pn_message_body(message)))
        value.messageID = Self.text(pn_message_get_id(message))
        value.correlationID = Self.text(pn_message_get_correlation_id(message))
        value.subject = pn_message_get_subject(message).map { String(cString: $0) }
        value.replyTo = pn_message_get_reply_to(message).map { String(cString: $0) }
        value.contentType = pn_message_get_content_type(message).map { String(cString: $0) }
        let ttl = pn_message_get_ttl(message)
        value.timeToLive = ttl > 0 ? .milliseconds(Int64(ttl)) : nil
        value.durable = pn_message_is_durable(message)
        value.applicationProperties = Self.properties(pn_message_properties(message))
        return value
    }

    private static func withBytes(_ text: String, _ body: (pn_bytes_t) -> Void) {
        var text = text
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { body(pn_bytes($0.count, $0.baseAddress)) }
        }
    }

    private static func setID(_ text: String, _ set: (pn_msgid_t) -> Int32) {
        withBytes(text) { bytes in
            var atom = pn_atom_t()
            atom.type = PN_STRING
            atom.u.as_bytes = bytes
            _ = set(atom)
        }
    }

    private static func text(_ atom: pn_atom_t) -> String? {
        switch atom.type {
        case PN_STRING, PN_SYMBOL, PN_BINARY:
            return string(atom.u.as_bytes)
        case PN_ULONG:
            return String(atom.u.as_ulong)
        default:
            return nil
        }
    }

    private static func string(_ bytes: pn_bytes_t) -> String {
        guard let start = bytes.start, bytes.size > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: start, count: bytes.size), as: UTF8.self)
    }

    /// The body's bytes: a data section, or the UTF-8 of a string value (as other clients send).
    private static func bytes(of body: OpaquePointer?) -> [UInt8] {
        guard let body else { return [] }
        pn_data_rewind(body)
        guard pn_data_next(body) else { return [] }
        let value: pn_bytes_t
        switch pn_data_type(body) {
        case PN_BINARY: value = pn_data_get_binary(body)
        case PN_STRING: value = pn_data_get_string(body)
        default: return []
        }
        guard let start = value.start, value.size > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: start, count: value.size))
    }

    private static func properties(_ data: OpaquePointer?) -> [String: String] {
        guard let data else { return [:] }
        pn_data_rewind(data)
        guard pn_data_next(data), pn_data_type(data) == PN_MAP else { return [:] }
        pn_data_enter(data)
        defer { pn_data_exit(data) }
        var result: [String: String] = [:]
        while pn_data_next(data) {
            let key = pn_data_type(data) == PN_SYMBOL ? string(pn_data_get_symbol(data)) : string(pn_data_get_string(data))
            guard pn_data_next(data) else { break }
            if pn_data_type(data) == PN_STRING { result[key] = string(pn_data_get_string(data)) }
        }
        return result
    }
}

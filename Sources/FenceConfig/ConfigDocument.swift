/// One entry of the tree: a block (`name { … }` or `name = "value" { … }`) or an assignment
/// (`name = "value";`).
public struct ConfigNode: Hashable, Sendable {
    public let name: String
    public let value: String?
    /// The line of the name.
    public let line: Int
    /// Nil for an assignment; the entries of a block, in file order.
    public let children: [ConfigNode]?

    public init(name: String, value: String?, line: Int, children: [ConfigNode]?) {
        self.name = name
        self.value = value
        self.line = line
        self.children = children
    }

    public var isBlock: Bool { children != nil }

    /// The blocks of this name, in file order (names compare case-insensitively, as the reference's).
    public func blocks(named name: String) -> [ConfigNode] {
        (children ?? []).filter { $0.isBlock && $0.name.lowercased() == name.lowercased() }
    }

    /// Every assignment of this name, in file order.
    public func assignments(named name: String) -> [ConfigNode] {
        (children ?? []).filter { !$0.isBlock && $0.name.lowercased() == name.lowercased() }
    }

    /// The assignment that counts: the reference returns the last occurrence of a repeated key.
    public func assignment(named name: String) -> ConfigNode? {
        assignments(named: name).last
    }

    /// This block with `update` applied to its first descendant block at `path`, created empty
    /// where missing.
    fileprivate func updatingBlock(_ path: ArraySlice<String>, _ update: (ConfigNode) -> ConfigNode) -> ConfigNode {
        guard let name = path.first else { return update(self) }
        var children = self.children ?? []
        if let index = children.firstIndex(where: { $0.isBlock && $0.name.lowercased() == name.lowercased() }) {
            children[index] = children[index].updatingBlock(path.dropFirst(), update)
        } else {
            children.append(ConfigNode.block(name, []).updatingBlock(path.dropFirst(), update))
        }
        return ConfigNode(name: self.name, value: value, line: line, children: children)
    }

    fileprivate func setting(_ path: ArraySlice<String>, _ key: String, _ newValue: String?) -> ConfigNode {
        updatingBlock(path) { block in
            var children = block.children ?? []
            let matches = { (node: ConfigNode) in !node.isBlock && node.name.lowercased() == key.lowercased() }
            if let newValue, let index = children.lastIndex(where: matches) {
                children[index] = ConfigNode(name: children[index].name, value: newValue, line: children[index].line, children: nil)
                children = children.enumerated().filter { $0.offset == index || !matches($0.element) }.map(\.element)
            } else if let newValue {
                children.append(.assignment(key, newValue))
            } else {
                children.removeAll(where: matches)
            }
            return ConfigNode(name: block.name, value: block.value, line: block.line, children: children)
        }
    }
}

/// A parsed `fence_virt.conf`: the reference's grammar, kept as a tree with line numbers.
///
/// ```
/// file  := item+
/// item  := ID '{' item* '}' | ID '=' VALUE '{' item* '}' | ID '=' VALUE ';'
/// VALUE := '"' one or more characters other than '"' '"'
/// ```
/// `#` starts a comment to the end of the line. An empty file is an error, as in the reference.
public struct ConfigDocument: Hashable, Sendable {
    public let file: String
    /// The top level, as a block without a name.
    public private(set) var root: ConfigNode

    public init(parsing text: String, file: String) throws(ConfigError) {
        var parser = Parser(tokens: try Lexer.tokens(in: text, file: file), file: file)
        self.file = file
        self.root = ConfigNode(name: "", value: nil, line: 0, children: try parser.parseFile())
    }

    /// A document built rather than read (the effective settings, the configurator's result).
    public init(file: String, items: [ConfigNode]) {
        self.file = file
        self.root = ConfigNode(name: "", value: nil, line: 0, children: items)
    }

    /// The value of an assignment inside the block at `path`, as written.
    public func value(_ path: [String], _ key: String) -> String? {
        block(path)?.assignment(named: key)?.value
    }

    /// Sets the assignment `key` in the first block at `path` (created where missing), or removes
    /// every occurrence of it when `value` is nil. Everything else keeps its place, comments aside.
    public mutating func set(_ path: [String], _ key: String, _ value: String?) {
        root = root.setting(path[...], key, value)
    }

    /// Removes the first block at `path`, if there is one.
    public mutating func remove(_ path: [String]) {
        guard let name = path.last else { return }
        root = root.updatingBlock(path.dropLast()) { parent in
            var children = parent.children ?? []
            if let index = children.firstIndex(where: { $0.isBlock && $0.name.lowercased() == name.lowercased() }) { children.remove(at: index) }
            return ConfigNode(name: parent.name, value: parent.value, line: parent.line, children: children)
        }
    }

    /// The first block at a path such as `["listeners", "multicast"]`.
    public func block(_ path: [String]) -> ConfigNode? {
        var node = root
        for name in path {
            guard let next = node.blocks(named: name).first else { return nil }
            node = next
        }
        return node
    }

    /// Writes the tree back in the layout `fence_virtd -c` uses: tab indents, a blank line after
    /// every block.
    public func rendered() -> String {
        func render(_ node: ConfigNode, depth: Int) -> String {
            let indent = String(repeating: "\t", count: depth)
            let head = node.value.map { "\(node.name) = \"\($0)\"" } ?? node.name
            guard let children = node.children else { return "\(indent)\(head);\n" }
            let body = children.map { render($0, depth: depth + 1) }.joined()
            return "\(indent)\(head) {\n\(body)\(indent)}\n\n"
        }
        return (root.children ?? []).map { render($0, depth: 0) }.joined()
    }
}

private enum Token: Equatable {
    case identifier(String)
    case value(String)
    case openBrace
    case closeBrace
    case equals
    case semicolon
}

private struct LocatedToken {
    let token: Token
    let line: Int
}

private enum Lexer {
    static func tokens(in text: String, file: String) throws(ConfigError) -> [LocatedToken] {
        var tokens: [LocatedToken] = []
        var line = 1
        var characters = Array(text.unicodeScalars)[...]
        func isIdentifierCharacter(_ character: Unicode.Scalar) -> Bool {
            !" \t\n\r{};=\"#".unicodeScalars.contains(character)
        }
        while let character = characters.first {
            switch character {
            case "\n":
                line += 1
                characters.removeFirst()
            case " ", "\t", "\r":
                characters.removeFirst()
            case "#":
                while let next = characters.first, next != "\n" { characters.removeFirst() }
            case "{", "}", "=", ";":
                let token: Token = switch character {
                case "{": .openBrace
                case "}": .closeBrace
                case "=": .equals
                default: .semicolon
                }
                tokens.append(LocatedToken(token: token, line: line))
                characters.removeFirst()
            case "\"":
                let startLine = line
                characters.removeFirst()
                var value = String.UnicodeScalarView()
                while let next = characters.first, next != "\"" {
                    if next == "\n" { line += 1 }
                    value.append(next)
                    characters.removeFirst()
                }
                guard characters.first == "\"" else {
                    throw ConfigError(code: .syntax, file: file, line: startLine, key: "", message: "unterminated quoted value")
                }
                characters.removeFirst()
                guard !value.isEmpty else {
                    throw ConfigError(code: .syntax, file: file, line: startLine, key: "", message: "empty value \"\" (the grammar needs at least one character)")
                }
                tokens.append(LocatedToken(token: .value(String(value)), line: startLine))
            default:
                var identifier = String.UnicodeScalarView()
                while let next = characters.first, isIdentifierCharacter(next) {
                    identifier.append(next)
                    characters.removeFirst()
                }
                tokens.append(LocatedToken(token: .identifier(String(identifier)), line: line))
            }
        }
        return tokens
    }
}

private struct Parser {
    var tokens: ArraySlice<LocatedToken>
    let file: String

    init(tokens: [LocatedToken], file: String) {
        self.tokens = tokens[...]
        self.file = file
    }

    mutating func parseFile() throws(ConfigError) -> [ConfigNode] {
        guard !tokens.isEmpty else {
            throw ConfigError(code: .syntax, file: file, line: 0, key: "", message: "the file holds no settings")
        }
        var items: [ConfigNode] = []
        while !tokens.isEmpty {
            items.append(try parseItem(path: ""))
        }
        return items
    }

    private mutating func parseItem(path: String) throws(ConfigError) -> ConfigNode {
        let first = tokens.removeFirst()
        guard case .identifier(let name) = first.token else {
            throw error(at: first, path: path, "expected a name, found \(describe(first.token))")
        }
        let key = path.isEmpty ? name : "\(path)/\(name)"
        guard let next = tokens.first else {
            throw ConfigError(code: .syntax, file: file, line: first.line, key: key, message: "unexpected end of file after '\(name)'")
        }
        switch next.token {
        case .openBrace:
            tokens.removeFirst()
            return ConfigNode(name: name, value: nil, line: first.line, children: try parseBlockBody(path: key, opening: next))
        case .equals:
            tokens.removeFirst()
            guard let valueToken = tokens.first, case .value(let value) = valueToken.token else {
                let found = tokens.first.map { describe($0.token) } ?? "end of file"
                throw ConfigError(code: .syntax, file: file, line: tokens.first?.line ?? next.line, key: key,
                                  message: "expected a quoted value after '=', found \(found)")
            }
            tokens.removeFirst()
            guard let terminator = tokens.first else {
                throw ConfigError(code: .syntax, file: file, line: valueToken.line, key: key, message: "missing ';' after the value")
            }
            switch terminator.token {
            case .semicolon:
                tokens.removeFirst()
                return ConfigNode(name: name, value: value, line: first.line, children: nil)
            case .openBrace:
                tokens.removeFirst()
                return ConfigNode(name: name, value: value, line: first.line, children: try parseBlockBody(path: key, opening: terminator))
            default:
                throw error(at: terminator, path: key, "missing ';' after the value, found \(describe(terminator.token))")
            }
        default:
            throw error(at: next, path: key, "expected '=' or '{' after '\(name)', found \(describe(next.token))")
        }
    }

    private mutating func parseBlockBody(path: String, opening: LocatedToken) throws(ConfigError) -> [ConfigNode] {
        var children: [ConfigNode] = []
        while true {
            guard let next = tokens.first else {
                throw ConfigError(code: .syntax, file: file, line: opening.line, key: path, message: "block opened here is never closed")
            }
            if next.token == .closeBrace {
                tokens.removeFirst()
                if let after = tokens.first, after.token == .semicolon {
                    throw error(at: after, path: path, "unexpected ';' after '}'")
                }
                return children
            }
            children.append(try parseItem(path: path))
        }
    }

    private func error(at token: LocatedToken, path: String, _ message: String) -> ConfigError {
        ConfigError(code: .syntax, file: file, line: token.line, key: path, message: message)
    }

    private func describe(_ token: Token) -> String {
        switch token {
        case .identifier(let name): "'\(name)'"
        case .value(let value): "\"\(value)\""
        case .openBrace: "'{'"
        case .closeBrace: "'}'"
        case .equals: "'='"
        case .semicolon: "';'"
        }
    }
}

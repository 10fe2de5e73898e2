-- tcplab.lua: Wireshark's view of the lab's protocol (lab/inside/protocol.py).
--
-- Without it, Wireshark shows the lab's port (7070, which no dissector claims) as
-- plain TCP data; with it, the packet list says what the lab says:
-- "ECHO hello", "OK hello", "BULK data, bytes 1448-2895 of 1000000".
--
-- The protocol, for this file's reader: a request is one line ("VERB args\n",
-- verbs ECHO, UPPER, TIME, BULK, CC, QUIT); a reply is one line, "OK text\n" or
-- "ERR reason\n"; the reply to "BULK n" is "OK n bytes follow\n", then n bytes of
-- data, then "OK end of bulk\n". The same lines go over UDP, one per datagram.
--
-- Install: copy this file into Wireshark's personal Lua plugins folder
-- (Help > About Wireshark > Folders; on Linux ~/.local/lib/wireshark/plugins/),
-- or try it once: wireshark -X lua_script:lab/wireshark/tcplab.lua FILE
-- (tshark takes the same option). The port is a preference (Protocols > TCPLAB).

local tcplab = Proto("tcplab", "tcplab request/response protocol")
local f_line = ProtoField.string("tcplab.line", "Line")
local f_verb = ProtoField.string("tcplab.verb", "Verb")
local f_status = ProtoField.string("tcplab.status", "Status")
local f_bulk = ProtoField.bytes("tcplab.bulk", "BULK data")
local f_bulk_left = ProtoField.uint32("tcplab.bulk_left", "BULK bytes still to come")
tcplab.fields = { f_line, f_verb, f_status, f_bulk, f_bulk_left }
tcplab.prefs.port = Pref.uint("Port", 7070, "the lab's server port (TCP and UDP)")

local tcp_seq = Field.new("tcp.seq")
local VERBS = { ECHO = true, UPPER = true, TIME = true, BULK = true, CC = true, QUIT = true }

-- What the first pass learned, for the passes after it (Wireshark dissects a
-- frame again whenever it is shown): per frame, and per direction of a stream.
local frames = {}        -- frame number -> list of parts {kind, offset, length, text, left}
local streams = {}       -- "a:port>b:port" -> {bulk_left, next_seq, asked_bulk}

local function direction(pinfo)
    return tostring(pinfo.src) .. ":" .. pinfo.src_port .. ">" .. tostring(pinfo.dst) .. ":" .. pinfo.dst_port
end

local function reverse(pinfo)
    return tostring(pinfo.dst) .. ":" .. pinfo.dst_port .. ">" .. tostring(pinfo.src) .. ":" .. pinfo.src_port
end

local function state_of(key)
    streams[key] = streams[key] or { bulks = {}, next_seq = 0, asked_bulk = 0 }
    return streams[key]
end

-- Split a segment into parts on the first pass, by sequence number, so that a
-- segment lost before the capture, sent again, or arriving out of order is still
-- read right: BULK data is the range of sequence numbers its header announced;
-- the rest is lines. A line cut by the segment's end is read with the next one.
local function first_pass(tvb, pinfo, to_server)
    local parts, state = {}, state_of(direction(pinfo))
    local seq = tcp_seq() and tcp_seq().value or state.next_seq
    local pos, size = 0, tvb:len()
    while pos < size do
        local here, bulk = seq + pos, nil
        for _, range in ipairs(state.bulks) do
            if range.start <= here and here < range.finish then bulk = range end
        end
        if bulk ~= nil then
            local take = math.min(bulk.finish - here, size - pos)
            parts[#parts + 1] = { kind = "bulk", offset = pos, length = take, first = here - bulk.start,
                                  total = bulk.finish - bulk.start }
            pos = pos + take
        elseif here < state.next_seq then
            parts[#parts + 1] = { kind = "again", offset = pos, length = size - pos }
            return parts, nil
        else
            local text = tvb:raw(pos, size - pos)
            local stop = text:find("\n", 1, true)
            if stop == nil then return parts, pos end      -- the line ends in a later segment
            local line = text:sub(1, stop - 1):gsub("\r$", "")
            parts[#parts + 1] = { kind = "line", offset = pos, length = stop, text = line }
            if to_server then
                local n = line:match("^[Bb][Uu][Ll][Kk]%s+(%d+)%f[%s\0]")     -- a note may follow
                state_of(reverse(pinfo)).asked_bulk = n and tonumber(n) or 0
            elseif state.asked_bulk > 0 then
                local n = tonumber(line:match("^OK (%d+) bytes follow$") or "0")
                if n > 0 then
                    local begin = here + stop
                    state.bulks[#state.bulks + 1] = { start = begin, finish = begin + n }
                end
                state.asked_bulk = 0
            end
            pos = pos + stop
            state.next_seq = seq + pos
        end
    end
    return parts, nil
end

local function show(parts, tvb, pinfo, tree, to_server)
    local subtree = tree:add(tcplab, tvb(), "tcplab")
    local info = {}
    for _, part in ipairs(parts) do
        local range = tvb(part.offset, part.length)
        if part.kind == "line" then
            local item = subtree:add(f_line, range, part.text)
            if to_server then
                local verb = part.text:match("^(%S+)")
                if verb and VERBS[verb:upper()] then item:add(f_verb, range, verb:upper()) end
            else
                item:add(f_status, range, part.text:match("^(%S+)") or "")
            end
            info[#info + 1] = part.text
        elseif part.kind == "bulk" then
            subtree:add(f_bulk, range)
            subtree:add(f_bulk_left, range, part.total - part.first - part.length)
            info[#info + 1] = string.format("BULK data, bytes %d-%d of %d", part.first, part.first + part.length - 1,
                                            part.total)
        else
            info[#info + 1] = "request or reply sent again (read before)"
        end
    end
    if #info > 0 then
        pinfo.cols.protocol = "TCPLAB"
        pinfo.cols.info = table.concat(info, " | ")
    end
end

function tcplab.dissector(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    local to_server = pinfo.dst_port == tcplab.prefs.port
    if pinfo.port_type == 3 then                          -- UDP: one line per datagram, no state
        local line = tvb:raw():gsub("\n$", "")
        show({ { kind = "line", offset = 0, length = tvb:len(), text = line } }, tvb, pinfo, tree, to_server)
        return tvb:len()
    end
    if not pinfo.visited then
        local parts, cut = first_pass(tvb, pinfo, to_server)
        frames[pinfo.number] = parts
        if cut ~= nil then                                 -- TCP brings the rest with the next segment
            pinfo.desegment_offset = cut
            pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
            if #parts == 0 then return end
            show(parts, tvb, pinfo, tree, to_server)
            return cut
        end
    end
    show(frames[pinfo.number] or {}, tvb, pinfo, tree, to_server)
    return tvb:len()
end

function tcplab.init()
    frames, streams = {}, {}
end

local registered = nil
local function register(port)
    if registered ~= nil then
        DissectorTable.get("tcp.port"):remove(registered, tcplab)
        DissectorTable.get("udp.port"):remove(registered, tcplab)
    end
    DissectorTable.get("tcp.port"):add(port, tcplab)
    DissectorTable.get("udp.port"):add(port, tcplab)
    registered = port
end

function tcplab.prefs_changed()
    register(tcplab.prefs.port)
end

register(tcplab.prefs.port)

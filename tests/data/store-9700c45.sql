-- A twin store made by twinseek at 9700c45 (before the store owned its SQL), dumped with sqlite3's iterdump:
-- three videos ingested (one with masks), a refinement, the component and dense catalogues synced (keyword
-- encoders of the tests), one decomposition, one judgement and one web ingest job stored.
-- tests/test_store_migrations.py opens it with today's code: nothing may be applied again, no row may change.
BEGIN TRANSACTION;
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO "_sqlite_migrations" VALUES(1,'twinseek','m001_initial','2026-12-06 14:42:36.055637+00:00');
INSERT INTO "_sqlite_migrations" VALUES(2,'twinseek','m002_decompositions','2026-12-06 14:42:36.057816+00:00');
INSERT INTO "_sqlite_migrations" VALUES(3,'twinseek','m003_refinements','2026-12-06 14:42:36.062140+00:00');
INSERT INTO "_sqlite_migrations" VALUES(4,'twinseek','m004_perception','2026-12-06 14:42:36.065779+00:00');
INSERT INTO "_sqlite_migrations" VALUES(5,'twinseek','m005_words','2026-12-06 14:42:36.070502+00:00');
INSERT INTO "_sqlite_migrations" VALUES(6,'twinseek','m006_ingest_queue','2026-12-06 14:42:36.074426+00:00');
INSERT INTO "_sqlite_migrations" VALUES(7,'twinseek','m007_judgements','2026-12-06 14:42:36.077863+00:00');
INSERT INTO "_sqlite_migrations" VALUES(8,'twinseek.index','m001_catalogues','2026-12-06 14:42:36.122857+00:00');
CREATE TABLE components (id integer primary key autoincrement, video_id text not null, kind text not null, track_id integer, object_track integer, predicate text, text text not null, frame_start integer, frame_end integer);
INSERT INTO "components" VALUES(1,'clip','object',1,NULL,NULL,'dog, brown; top left, medium, moving right',0,10);
INSERT INTO "components" VALUES(2,'clip','relation',1,NULL,'moving right','dog moving right',0,10);
INSERT INTO "components" VALUES(3,'pair','object',1,NULL,NULL,'cat; medium, stationary',0,10);
INSERT INTO "components" VALUES(4,'pair','object',2,NULL,NULL,'ball; medium, stationary',0,10);
INSERT INTO "components" VALUES(5,'pair','relation',1,2,'near','cat near ball',0,10);
INSERT INTO "components" VALUES(6,'pair','relation',2,1,'left of','ball left of cat',0,10);
INSERT INTO "components" VALUES(7,'solo','object',1,NULL,NULL,'horse; medium, stationary',0,10);
CREATE TABLE "decompositions" (
   "query" TEXT,
   "model" TEXT,
   "prompt_version" TEXT,
   "decomposition" TEXT,
   "created_at" TEXT,
   PRIMARY KEY ("query", "model", "prompt_version")
);
INSERT INTO "decompositions" VALUES('a dog running','embedded:stub','v1','{"subqueries":[{"text":"a dog running","type":"action","weight":1.0,"negated":false}],"rewritten":"a dog running","source":"fallback"}','2026-12-06T14:42:36+00:00');
CREATE TABLE dense_items (id integer primary key autoincrement, video_id text not null, source text not null, text text not null);
INSERT INTO "dense_items" VALUES(1,'clip','gist','Objects: dog.');
INSERT INTO "dense_items" VALUES(2,'pair','gist','Objects: cat, ball.');
INSERT INTO "dense_items" VALUES(3,'solo','llm:test','Objects: horse. a horse in a field');
CREATE TABLE "indexed_videos" (
   "index_name" TEXT,
   "video_id" TEXT,
   "signature" TEXT,
   "items" INTEGER,
   "indexed_at" REAL,
   PRIMARY KEY ("index_name", "video_id")
);
INSERT INTO "indexed_videos" VALUES('components','clip','8aaa2cf5a3df0623',2,1.79656815614005064968e+09);
INSERT INTO "indexed_videos" VALUES('components','pair','9029254cf8ca81cb',4,1.79656815614005064968e+09);
INSERT INTO "indexed_videos" VALUES('components','solo','841755851ff0e3fe',1,1.79656815614005064968e+09);
INSERT INTO "indexed_videos" VALUES('dense','clip','b5b2836dcc6fc4f6',1,1.79656815617555856703e+09);
INSERT INTO "indexed_videos" VALUES('dense','pair','826b6bb6b82e930f',1,1.79656815617555856703e+09);
INSERT INTO "indexed_videos" VALUES('dense','solo','6367f746a77d2852',1,1.79656815617555856703e+09);
CREATE TABLE "ingest_files" (
   "job_id" TEXT REFERENCES "ingest_jobs"("id"),
   "position" INTEGER,
   "name" TEXT NOT NULL,
   "path" TEXT NOT NULL,
   "status" TEXT NOT NULL,
   "video_id" TEXT,
   "error" TEXT,
   "frames" INTEGER,
   "tracks" INTEGER,
   "seconds" REAL,
   "started" REAL,
   PRIMARY KEY ("job_id", "position")
);
INSERT INTO "ingest_files" VALUES('job1',0,'a.mp4','/v/a.mp4','ingested','a',NULL,3,NULL,NULL,NULL);
CREATE TABLE "ingest_jobs" (
   "id" TEXT PRIMARY KEY,
   "source" TEXT NOT NULL,
   "label" TEXT NOT NULL,
   "created" TEXT NOT NULL,
   "status" TEXT NOT NULL,
   "error" TEXT,
   "upload_folder" TEXT
);
INSERT INTO "ingest_jobs" VALUES('job1','folder','/v','2026-01-01T00:00:00','done',NULL,NULL);
CREATE TABLE "instances" (
   "video_id" TEXT REFERENCES "videos"("video_id"),
   "track_id" INTEGER,
   "frame_index" INTEGER,
   "category" TEXT,
   "category_score" REAL,
   "attributes" TEXT,
   "mask_path" TEXT,
   "bbox_x1" REAL,
   "bbox_y1" REAL,
   "bbox_x2" REAL,
   "bbox_y2" REAL,
   "centroid_x" REAL,
   "centroid_y" REAL,
   "depth" REAL,
   "area" REAL,
   PRIMARY KEY ("video_id", "track_id", "frame_index")
);
INSERT INTO "instances" VALUES('clip',1,0,'dog',0.9,'brown','masks/clip/82f9e947549b/t1_f0.png',0.078125,2.08333333333333342585e-01,0.234375,4.1666666666666668517e-01,0.15625,0.3125,NULL,3.25520833333333356462e-02);
INSERT INTO "instances" VALUES('clip',1,5,'dog',0.9,'brown','masks/clip/82f9e947549b/t1_f5.png',0.234375,2.08333333333333342585e-01,0.390625,4.1666666666666668517e-01,0.3125,0.3125,NULL,3.25520833333333356462e-02);
INSERT INTO "instances" VALUES('clip',1,10,'dog',0.9,'brown','masks/clip/82f9e947549b/t1_f10.png',0.390625,2.08333333333333342585e-01,0.546875,4.1666666666666668517e-01,0.46875,0.3125,NULL,3.25520833333333356462e-02);
CREATE TABLE "judgements" (
   "key" TEXT PRIMARY KEY,
   "model" TEXT,
   "value" REAL,
   "created_at" TEXT
);
INSERT INTO "judgements" VALUES('kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk','stub',0.75,'2026-12-06T14:42:36+00:00');
CREATE TABLE "refinements" (
   "id" INTEGER PRIMARY KEY,
   "key" TEXT NOT NULL,
   "call" TEXT NOT NULL,
   "video_id" TEXT NOT NULL REFERENCES "videos"("video_id"),
   "track_id" INTEGER,
   "frames" TEXT,
   "action" TEXT NOT NULL,
   "args" TEXT,
   "model" TEXT NOT NULL,
   "prompt_version" TEXT NOT NULL,
   "field" TEXT NOT NULL,
   "value" TEXT,
   "confidence" REAL,
   "provenance" TEXT,
   "created_at" TEXT
);
INSERT INTO "refinements" VALUES(1,'e681bcb1ecda431641cf77a94fcec8c2','35f217082eb4ec58762be9af66fee9a8','clip',1,'[]','describe','{}','stub','1','attributes','"spotted"',0.8,'{"created_at": "2026-01-02T00:00:00+00:00"}','2026-01-02T00:00:00+00:00');
CREATE TABLE "relations" (
   "id" INTEGER PRIMARY KEY,
   "video_id" TEXT REFERENCES "videos"("video_id"),
   "subject_track" INTEGER,
   "predicate" TEXT,
   "object_track" INTEGER,
   "kind" TEXT,
   "frame_start" INTEGER,
   "frame_end" INTEGER
);
INSERT INTO "relations" VALUES(1,'clip',1,'moving right',NULL,'temporal',0,10);
INSERT INTO "relations" VALUES(2,'pair',1,'near',2,'spatial',0,10);
INSERT INTO "relations" VALUES(3,'pair',2,'left of',1,'spatial',0,10);
CREATE TABLE "tracks" (
   "video_id" TEXT REFERENCES "videos"("video_id"),
   "track_id" INTEGER,
   "category" TEXT,
   "category_score" REAL,
   "category_source" TEXT,
   "category_group" TEXT,
   "category_candidates" TEXT,
   "attributes" TEXT,
   "first_frame" INTEGER,
   "last_frame" INTEGER,
   "frame_count" INTEGER,
   "mean_area" REAL,
   "speed" REAL,
   "direction" TEXT, "votes" TEXT,
   PRIMARY KEY ("video_id", "track_id")
);
INSERT INTO "tracks" VALUES('clip',1,'dog',0.9,'test','dog','[["wolf", 0.05]]','brown',0,10,3,0.03,0.3,'right','{}');
INSERT INTO "tracks" VALUES('pair',1,'cat',0.9,'t',NULL,'[]','',0,10,3,0.05,0.0,'stationary','{}');
INSERT INTO "tracks" VALUES('pair',2,'ball',0.9,'t',NULL,'[]','',0,10,3,0.05,0.0,'stationary','{}');
INSERT INTO "tracks" VALUES('solo',1,'horse',0.9,'t',NULL,'[]','',0,10,3,0.05,0.0,'stationary','{}');
CREATE TABLE "videos" (
   "video_id" TEXT PRIMARY KEY,
   "path" TEXT,
   "content_hash" TEXT,
   "width" INTEGER,
   "height" INTEGER,
   "fps" REAL,
   "frame_count" INTEGER,
   "duration_s" REAL,
   "sampled_frames" TEXT,
   "profile" TEXT,
   "specialists" TEXT,
   "scene" TEXT,
   "ecr_text" TEXT,
   "ecr_source" TEXT,
   "mask_dir" TEXT,
   "ingested_at" TEXT
, "screen_text" TEXT, "frame_votes" TEXT, "description" TEXT, "description_source" TEXT);
INSERT INTO "videos" VALUES('clip','/videos/clip.mp4','hash-clip',64,48,10.0,12,1.2,'[0, 5, 10]','embedded','[{"role": "segmenter", "tier": "embedded", "model": "m"}]','[]',NULL,NULL,'masks/clip/82f9e947549b','2026-12-06T14:42:36+00:00','[]','{}',NULL,NULL);
INSERT INTO "videos" VALUES('pair','/videos/pair.mp4','hash-pair-2',64,48,10.0,12,1.2,'[0, 5, 10]','embedded','[{"role": "segmenter", "tier": "embedded", "model": "m"}]','[]','a cat near a ball',NULL,'masks/pair/59ed415660c2','2026-12-06T14:42:36+00:00','[]','{}',NULL,NULL);
INSERT INTO "videos" VALUES('solo','/videos/solo.mp4','hash-solo-1',64,48,10.0,12,1.2,'[0, 5, 10]','embedded','[{"role": "segmenter", "tier": "embedded", "model": "m"}]','[]','a horse in a field','llm:test','masks/solo/1d78ad90338b','2026-12-06T14:42:36+00:00','[]','{}',NULL,NULL);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE INDEX "idx_videos_content_hash"
    ON "videos" ("content_hash");
CREATE INDEX "idx_instances_video_id_frame_index"
    ON "instances" ("video_id", "frame_index");
CREATE INDEX "idx_tracks_category"
    ON "tracks" ("category");
CREATE INDEX "idx_relations_video_id_predicate"
    ON "relations" ("video_id", "predicate");
CREATE UNIQUE INDEX "idx_refinements_key"
    ON "refinements" ("key");
CREATE INDEX "idx_refinements_video_id_call"
    ON "refinements" ("video_id", "call");
CREATE INDEX "idx_ingest_files_status"
    ON "ingest_files" ("status");
CREATE INDEX "idx_components_video_id"
    ON "components" ("video_id");
CREATE INDEX "idx_components_kind_predicate"
    ON "components" ("kind", "predicate");
CREATE INDEX "idx_dense_items_video_id"
    ON "dense_items" ("video_id");
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('components',7);
INSERT INTO "sqlite_sequence" VALUES('dense_items',3);
COMMIT;

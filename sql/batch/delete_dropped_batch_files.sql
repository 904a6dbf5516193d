DELETE FROM stage_batch_files WHERE load_order IN :dropped;
